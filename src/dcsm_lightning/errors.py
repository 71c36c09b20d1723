"""The exceptions that mean "the user's input is wrong" or "the run was stopped": the lowest
layer, raised anywhere in the package; :mod:`dcsm_lightning.app.error_report` prints them as one
line and an exit status."""

from __future__ import annotations


class UserError(Exception):
    """A problem with the user's input; the message names the file or field and what to do.

    Args:
        message: one line: what is wrong, naming the file / field.
        hint: optional one line: what to do about it.
    """

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint


def with_hint(exc: BaseException, hint: str) -> BaseException:
    """Attach a one-line ``hint`` to any exception (printed under its first line); return it."""
    exc.hint = hint  # type: ignore[attr-defined]
    return exc


class Interrupted(Exception):  # noqa: N818 (a state, not an error)
    """The run stopped early on a signal (SIGTERM from a batch scheduler, Ctrl-C).

    Args:
        signum: the signal that stopped the run.
        message: what was kept and how to resume.
    """

    def __init__(self, signum: int, message: str) -> None:
        super().__init__(message)
        self.signum = signum
