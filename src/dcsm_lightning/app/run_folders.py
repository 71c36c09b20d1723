"""One folder per pipeline run: where the commands that use a checkpoint put what they write.

``fit`` makes a run folder (``runs/<name>/version_N/``, its checkpoints in ``checkpoints/``).
Every later command given ``--ckpt_path`` of one of those checkpoints writes into a subfolder
of that run named after the command, unless ``--output_dir`` says otherwise:

=================  =====================================================================
``compare``        ``<run>/compare/``: the table, CSV, chart and the TensorBoard events
``validate``       ``<run>/validate/`` (``test``: ``<run>/test/``): the TensorBoard events
``predict``        ``<run>/predict/``; with ``--images DIR``: ``<run>/predict_<DIR name>/``
``pseudo-labels``  ``<run>/pseudo_labels/``
``tune``           ``<run>/tune/``
=================  =====================================================================

The run folder is the one above ``checkpoints/``. A checkpoint elsewhere (``models/cats.ckpt``)
gets a folder named after it beside it (``models/cats/``), so the outputs of one checkpoint
stay together and never land in whatever folder the command runs from. ``predict``,
``pseudo-labels`` and ``tune`` log nothing (no logger); ``compare`` / ``validate`` / ``test``
log into their folder instead of a new ``version_N`` beside the run.
"""

from __future__ import annotations

import os
from pathlib import Path

from dcsm_lightning.errors import UserError
from dcsm_lightning.outputs.layout import safe_name

__all__ = ["LOGGING", "SILENT", "default_output_dir", "run_folder"]

#: Commands whose metrics and pictures go to a logger: it logs into the command's folder.
LOGGING = ("compare", "validate", "test")
#: Commands that log nothing: their logger is switched off.
SILENT = ("predict", "pseudo-labels", "tune")
#: Lightning's name for the folder of a run's checkpoints.
_CHECKPOINTS = "checkpoints"


def run_folder(ckpt_path: str | os.PathLike[str]) -> Path:
    """The folder a checkpoint's later outputs go to.

    Args:
        ckpt_path: a checkpoint file.

    Returns:
        ``<run>`` for ``<run>/checkpoints/<name>.ckpt``; otherwise ``<folder>/<stem>`` for
        ``<folder>/<stem>.ckpt``.
    """
    path = Path(ckpt_path).expanduser()
    if path.parent.name == _CHECKPOINTS:
        return path.parent.parent
    return path.parent / path.stem


def default_output_dir(
    ckpt_path: str | os.PathLike[str], command: str, images: str | None = None
) -> Path:
    """Where ``command`` writes for ``ckpt_path`` when no ``--output_dir`` is given.

    Args:
        ckpt_path: the checkpoint file the command uses.
        command: ``compare``, ``validate``, ``test``, ``predict``, ``pseudo-labels`` or ``tune``.
        images: ``predict --images DIR``'s folder: its name is added (``predict_<name>``) so
            that two folders of images never share one output folder (their image ids could
            clash, and a finished id is skipped on the next run).

    Raises:
        UserError: the folder cannot be created there (a read-only place).
    """
    name = command.replace("-", "_")
    if images is not None:
        name = f"{name}_{safe_name(Path(images).expanduser().resolve().name)}"
    out = run_folder(ckpt_path) / name
    existing = next(parent for parent in (out, *out.parents) if parent.exists())
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(
            f"{command} writes beside checkpoint {ckpt_path} by default, but {existing} is "
            "not writable",
            "give --output_dir DIR",
        )
    return out
