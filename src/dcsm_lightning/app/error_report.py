"""How a command reports user errors: one line (plus at most a hint) and a non-zero exit
instead of a traceback.

:func:`run_command` wraps the command's ``main``. A *user error* is a problem with what the user
gave (a file, a folder, an option): :class:`UserError`, the ``OSError`` family (missing file,
permission, disk full, ...), ``ValueError`` / ``KeyError`` raised on bad input, and command-line
parse errors. It is printed as::

    dcsm-lightning: error: <the first line of the message>
    hint: <one line>

and the command exits with :data:`EXIT_USER_ERROR`. Anything else is a bug and keeps its
traceback. ``--debug`` on the command line, or ``DCSM_DEBUG=1`` in the environment, shows the
traceback of every error.
"""

from __future__ import annotations

import argparse
import errno
import os
import re
import signal
import sys
from collections.abc import Callable, Sequence
from typing import Any

from lightning.pytorch.utilities.exceptions import SIGTERMException

from dcsm_lightning.errors import Interrupted, UserError

PROG = "dcsm-lightning"
DEBUG_FLAG = "--debug"
DEBUG_ENV = "DCSM_DEBUG"
#: Exit status of a user error, and of a command-line (usage) error, as argparse has it.
EXIT_USER_ERROR = 1
EXIT_USAGE = 2
#: Exit status after SIGTERM / SIGINT: 128 + the signal number, as a shell reports it.
EXIT_SIGTERM = 128 + signal.SIGTERM
EXIT_SIGINT = 128 + signal.SIGINT

_DEBUG_HINT = f"add {DEBUG_FLAG} (or set {DEBUG_ENV}=1) to see the traceback"


_USER_ERROR_TYPES: tuple[type[BaseException], ...] = (
    UserError,
    OSError,
    ValueError,
    KeyError,
    argparse.ArgumentError,
)

_PARSE_NOISE = (
    "Does not validate",
    "Subtypes:",
    "Errors:",
    "Given value",
    "Problem with given class_path",
    "Expected a <class 'NoneType'>",
    "Expected a <class 'list'>",
)

_OS_HINTS = {
    errno.ENOSPC: "free some space on that disk or choose another --output_dir",
    errno.EDQUOT: "free some space on that disk or choose another --output_dir",
    errno.EFBIG: "the file size limit (ulimit -f) was reached; raise it or write elsewhere",
    errno.EACCES: "choose a folder you can write to, or fix its permissions",
    errno.EPERM: "choose a folder you can write to, or fix its permissions",
    errno.EROFS: "the file system is read-only; choose another folder",
}


def debug_requested(args: list[str]) -> bool:
    """Remove ``--debug`` from ``args``; whether it or ``DCSM_DEBUG=1`` asks for tracebacks."""
    flag = DEBUG_FLAG in args
    while DEBUG_FLAG in args:
        args.remove(DEBUG_FLAG)
    return flag or os.environ.get(DEBUG_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def unwrap(exc: BaseException) -> BaseException:
    """The exception a class raised while jsonargparse instantiated it (jsonargparse wraps it
    in a ValueError listing the union's types), else ``exc``."""
    while (
        isinstance(exc, ValueError)
        and exc.__cause__ is not None
        and str(exc).startswith("Does not validate against any of the Union subtypes")
    ):
        exc = exc.__cause__
    return exc


def is_user_error(exc: BaseException) -> bool:
    """Whether ``exc`` is a problem with the user's input rather than a bug."""
    return isinstance(unwrap(exc), _USER_ERROR_TYPES)


def _first_line(text: str) -> tuple[str, bool]:
    """The first non-empty line of ``text`` and whether more lines were dropped.

    A DataLoader worker re-raises its exception with the worker's traceback in the message;
    its last line is the original message.
    """
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    if not lines:
        return "", False
    if "Original Traceback" in lines[0] or lines[0].startswith("Caught "):
        last = lines[-1]
        name, sep, rest = last.partition(": ")
        return (rest if sep and name.isidentifier() else last), False
    return lines[0], len(lines) > 1


def summarize_parse_error(message: str) -> str:
    """One line from a (nested, multi-line) jsonargparse error: the field and its problem.

    The reason is the line after the innermost "Problem with given class_path" if there is
    one, else the last line that is not one of jsonargparse's union-type explanations.
    """
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    if len(lines) <= 1:
        return lines[0] if lines else message
    keys = re.findall(r'Parser key "([^"]+)"', message)
    problems = [i for i, line in enumerate(lines) if "Problem with given class_path" in line]
    if problems and problems[-1] + 1 < len(lines) and "Parser key" not in lines[problems[-1] + 1]:
        detail = lines[problems[-1] + 1].lstrip("- ")
    else:
        details = [
            line.lstrip("- ")
            for line in lines
            if "Parser key" not in line and not line.lstrip("- ").startswith(_PARSE_NOISE)
        ]
        detail = details[-1] if details else lines[0]
    field = ".".join(dict.fromkeys(keys))
    return f"{field}: {detail}" if field else detail


def describe(exc: BaseException) -> tuple[str, str | None]:
    """The one-line message and the hint (or None) printed for a user error."""
    exc = unwrap(exc)
    if isinstance(exc, argparse.ArgumentError):
        return summarize_parse_error(str(exc)), f"run `{PROG} <subcommand> --help` for the options"
    if isinstance(exc, KeyError) and len(exc.args) == 1 and isinstance(exc.args[0], str):
        text = exc.args[0]  # str(KeyError) adds quotes
    elif isinstance(exc, OSError) and exc.strerror:
        named = exc.filename is None or str(exc.filename) in exc.strerror
        text = exc.strerror if named else f"{exc.strerror}: {exc.filename}"
    else:
        text = str(exc)
    message, truncated = _first_line(text or type(exc).__name__)
    hint = getattr(exc, "hint", None)
    if hint is None and isinstance(exc, OSError):
        hint = _OS_HINTS.get(exc.errno or -1)
    if hint is None and truncated:
        hint = f"the full message: {_DEBUG_HINT}"
    return message, hint


def report(exc: BaseException, stream: Any = None) -> None:
    """Print the one-line message (and hint) of a user error to ``stream`` (stderr)."""
    stream = stream or sys.stderr
    message, hint = describe(exc)
    stream.write(f"{PROG}: error: {message}\n")
    if hint:
        stream.write(f"hint: {hint}\n")
    stream.flush()


def run_command(main: Callable[[list[str]], Any], args: Sequence[str] | None = None) -> int:
    """Run ``main(args)`` and turn user errors into one line and an exit status.

    Args:
        main: the command's entry point, taking the argument list.
        args: the arguments; default ``sys.argv[1:]``. ``--debug`` is removed from them.

    Returns:
        0 on success, :data:`EXIT_USER_ERROR` for a user error, 128 + the signal number
        after an interruption, the status of a ``SystemExit``.
    """
    args = list(sys.argv[1:] if args is None else args)
    debug = debug_requested(args)
    try:
        main(args)
    except SIGTERMException:  # Lightning's fit / evaluation loops stop on SIGTERM
        if debug:
            raise
        sys.stderr.write(f"{PROG}: stopped on SIGTERM\n")
        return EXIT_SIGTERM
    except SystemExit as exc:  # argparse (usage errors, --help) and explicit exits
        if isinstance(exc.code, str):
            sys.stderr.write(f"{PROG}: error: {exc.code}\n")
            return EXIT_USER_ERROR
        return int(exc.code or 0)
    except KeyboardInterrupt:
        if debug:
            raise
        sys.stderr.write(f"{PROG}: interrupted\n")
        return EXIT_SIGINT
    except Interrupted as exc:
        if debug:
            raise
        sys.stderr.write(f"{PROG}: {exc}\n")
        return 128 + exc.signum
    except Exception as exc:
        if debug or not is_user_error(exc):
            raise
        report(exc)
        return EXIT_USAGE if isinstance(exc, argparse.ArgumentError) else EXIT_USER_ERROR
    return 0
