"""Lightning's messages that tell a ``dcsm-lightning`` user nothing, silenced for one command.

Only messages about Lightning itself or about a checkpoint's training callbacks are dropped;
every warning about the user's data, model or options still shows.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["quiet_evaluation", "quiet_lightning"]

#: Warnings that never concern the user.
_ALWAYS = (
    ".*args parameter is intended.*",  # LightningCLI whenever args is given and sys.argv is not
    r".*isinstance\(treespec, LeafSpec\). is deprecated.*",  # Lightning's code on a newer torch
)
#: Warnings about a checkpoint's training callbacks (ModelCheckpoint), which an evaluation or a
#: prediction neither restores nor needs.
_EVALUATING = (
    ".*dirpath has changed from.*",
    ".*callbacks used to create the checkpoint need to be provided.*",
)
#: An advertisement Lightning logs whenever a Trainer is built.
_TIP = "Tip: For seamless cloud logging"
_TIP_LOGGER = "lightning.pytorch.utilities.rank_zero"


class _DropTip(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return _TIP not in record.getMessage()


@contextmanager
def quiet_lightning() -> Iterator[None]:
    """Within: the messages in ``_ALWAYS`` and Lightning's logging tip are dropped; the
    warning filters (with :func:`quiet_evaluation`'s) are restored on exit."""
    tip = _DropTip()
    logger = logging.getLogger(_TIP_LOGGER)
    logger.addFilter(tip)
    try:
        with warnings.catch_warnings():
            for message in _ALWAYS:
                warnings.filterwarnings("ignore", message=message)
            yield
    finally:
        logger.removeFilter(tip)


def quiet_evaluation() -> None:
    """Drop the warnings about a checkpoint's training callbacks (call within
    :func:`quiet_lightning`, for a command other than ``fit``: resuming ``fit`` needs them)."""
    for message in _EVALUATING:
        warnings.filterwarnings("ignore", message=message)
