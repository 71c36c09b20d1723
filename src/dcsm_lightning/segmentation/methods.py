"""Method names as typed pairs: a strategy and, optionally, the refinement step after it.

A segmentation method is what produces one set of masks: a saliency strategy's plain Eq. 7
labels (``dcsm``) or the same maps refined by a named step (``dcsm+crf``, ``dcsm+crf16``).
:class:`Method` carries both parts, so nothing parses a name back into them; it is also the
string a user reads and writes (metric keys ``val/miou/<method>``, report rows, the writer's
``method`` option), so masks stay indexable by ``"dcsm+crf"``.
"""

from __future__ import annotations

from typing import Any

__all__ = ["SEPARATOR", "Method", "check_distinct", "check_part"]

#: Joins a strategy and a refinement step in a method's name; refused inside either part.
SEPARATOR = "+"


def check_part(name: object, what: str) -> str:
    """``name`` as a method part (a strategy's or a refinement step's name).

    Raises:
        ValueError: not a non-empty string, or it holds :data:`SEPARATOR` or ``/`` (``/``
            separates the parts of logged metric keys).
    """
    if not isinstance(name, str) or not name or SEPARATOR in name or "/" in name:
        raise ValueError(
            f"{what} name must be a non-empty string without {SEPARATOR!r} or '/', got {name!r}"
        )
    return name


def check_distinct(names: list[str], what: str, hint: str) -> None:
    """Raise ValueError naming the duplicates if ``names`` (of ``what``) repeat one."""
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise ValueError(f"{what} need distinct names; {duplicated} is used twice ({hint})")


class Method(str):
    """The name of a segmentation method with its two parts.

    ``Method("dcsm")`` reads ``"dcsm"``; ``Method("dcsm", "crf")`` reads ``"dcsm+crf"`` and
    has ``.strategy == "dcsm"``, ``.step == "crf"``. It is a ``str``: it compares and hashes
    as its name, so ``masks["dcsm+crf"]`` finds the entry keyed by ``Method("dcsm", "crf")``.

    Args:
        strategy: the strategy's (map source's) name.
        step: the refinement step's name, or None for the plain Eq. 7 masks.

    Raises:
        ValueError: a part that :func:`check_part` refuses.
    """

    strategy: str
    step: str | None

    def __new__(cls, strategy: str, step: str | None = None) -> Method:
        check_part(strategy, "strategy")
        if step is not None:
            check_part(step, "refinement step")
        text = strategy if step is None else f"{strategy}{SEPARATOR}{step}"
        method = super().__new__(cls, text)
        method.strategy = strategy
        method.step = step
        return method

    @classmethod
    def parse(cls, text: str) -> Method:
        """A method read back from a file (a CSV row's name): ``"dcsm+crf"`` -> ``Method("dcsm",
        "crf")``; a name that is not two valid parts stays whole (``Method(text)`` when
        valid, else a plain step-less name). Only for text from outside the program: in
        memory methods keep their parts."""
        strategy, sep, step = text.rpartition(SEPARATOR)
        try:
            return cls(strategy, step) if sep else cls(text)
        except ValueError:
            method = super().__new__(cls, text)
            method.strategy, method.step = text, None
            return method

    def refined(self, step: str) -> Method:
        """The method of this one's strategy refined by ``step``."""
        return Method(self.strategy, step)

    def __repr__(self) -> str:
        return f"Method({self.strategy!r}, {self.step!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (Method, (self.strategy, self.step))
