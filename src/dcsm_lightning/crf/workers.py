"""Set-up of the DenseCRF worker processes: they end with their parent and leave signals to it.

A worker of a ``ProcessPoolExecutor`` holds a copy of its parent's memory (hundreds of MiB). If
the parent is killed (SIGKILL, the OOM killer) the pool cannot shut it down, and an idle worker
would wait for work forever. On Linux :func:`init_worker` asks the kernel to send the worker
SIGKILL when its parent dies (``prctl(PR_SET_PDEATHSIG)``); elsewhere a daemon thread polls
the parent's pid. SIGINT and SIGTERM are ignored by the workers: a Ctrl-C or a batch
scheduler's SIGTERM sent to the whole process group is handled by the parent, which stops
after the current batch and shuts the pool down.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import os
import signal
import sys
import threading
import time

_PR_SET_PDEATHSIG = 1
_POLL_SECONDS = 1.0


def _die_with_parent_linux() -> bool:
    """Ask the kernel to SIGKILL this process when its parent dies; whether that worked."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        return libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _watch_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(_POLL_SECONDS)
    os._exit(1)


def init_worker(parent: int | None = None) -> None:
    """Pool initializer: end with the parent, ignore SIGINT / SIGTERM, freeze the GC.

    Args:
        parent: the pid of the process that created the pool (default: the current parent).
            If it is already gone when the worker starts, the worker exits at once.
    """
    parent = os.getppid() if parent is None else parent
    if not (sys.platform.startswith("linux") and _die_with_parent_linux()):
        threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    # the forked child never collects (nor finalises) the parent's objects
    gc.freeze()
