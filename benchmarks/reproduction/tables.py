"""The paper's Tables 1-6 as settings to evaluate, each row beside the paper's figure.

Figures are the paper's mIoU (%) on PASCAL VOC 2012 val (Shimoda & Yanai, ECCV 2016; restated in
``shared/paper/METHOD.md``). Tables 1-5 are with the dense CRF; Table 6 gives both. ``None``:
the paper has no figure for that row (e.g. alpha = 1, CAM, Grad-CAM, oracle tags).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from dcsm_lightning.saliency import SaliencyStrategy, create_saliency

#: Table 1's alphas (the issue's grid; the paper has 2, 2.5, 3, 4, 5 for DCSM and 3-15 for
#: Simonyan); also the hold-out search grid.
ALPHAS = (1.0, 2.0, 3.0, 4.0, 5.0, 8.0)
#: The CRF bilateral (appearance) kernel weights w1 searched on the hold-out (paper: w1 = 1).
BILATERAL_WEIGHTS = (0.5, 1.0, 2.0, 4.0, 8.0, 16.0)

PAPER_DCSM_ALPHA = {2.0: 40.0, 2.5: 44.0, 3.0: 44.1, 4.0: 40.6, 5.0: 36.4}
PAPER_SIMONYAN_ALPHA = {
    3.0: 10.0, 4.0: 20.6, 5.0: 28.3, 6.0: 32.7, 7.0: 33.4, 8.0: 33.8, 9.0: 33.8, 10.0: 33.3,
    15.0: 28.7,
}  # fmt: skip


@dataclass(frozen=True)
class Setting:
    """One way of making masks: a registered strategy with options, and how candidates are chosen.

    Args:
        strategy: registry name (``dcsm``, ``simonyan``, ``cam``, ``gradcam``, or a plugin's).
        options: the strategy's init arguments, as sorted ``(name, value)`` pairs.
        candidates: ``"predicted"`` (score > 0.5 topped up to ``min_candidates``) or
            ``"labels"`` (the image tags: oracle candidates).
        min_candidates: N, the top-up size.
    """

    strategy: str
    options: tuple[tuple[str, Any], ...] = ()
    candidates: str = "predicted"
    min_candidates: int = 3

    def build(self) -> SaliencyStrategy:
        """The strategy, from the registry."""
        return create_saliency(self.strategy, **dict(self.options))

    def key(self) -> str:
        """A string equal for equal configurations (from the built strategy's attributes)."""
        return json.dumps([repr(self.build()), self.candidates, self.min_candidates])


def dcsm(**options: Any) -> Setting:
    """DCSM with the paper's defaults (guided BP, blocks 3-5, 3 scales, alpha 3, N = 3)."""
    return Setting("dcsm", tuple(sorted(options.items())))


def block(number: int) -> tuple[str, ...]:
    """The three conv layers of a VGG block, e.g. ``conv4_1``, ``conv4_2``, ``conv4_3``."""
    return tuple(f"conv{number}_{j}" for j in (1, 2, 3))


@dataclass(frozen=True)
class Row:
    """A table row: a label, its setting, the paper's mIoU (%) with and without the CRF, and
    where it lies in its table's sweep: ``(line, knob value)`` (e.g. ``("dcsm", 3.0)``), or
    None for a row that is no point of the sweep (or a table without one)."""

    label: str
    setting: Setting
    paper_crf: float | None = None
    paper_plain: float | None = None
    point: tuple[str, float] | None = None


@dataclass(frozen=True)
class Table:
    """A table: its id (``"1"`` ... ``"6"``), title, rows, and what the paper's setting was."""

    id: str
    title: str
    rows: tuple[Row, ...]
    note: str = ""
    all_checkpoints: bool = field(default=False)
    #: the knob the rows sweep (``"alpha"``, ``"N"``): its chart is a line plot, else bars.
    knob: str | None = None


def _alpha_rows() -> tuple[Row, ...]:
    rows = [
        Row(f"dcsm alpha={a:g}", dcsm(alpha=a), PAPER_DCSM_ALPHA.get(a), point=("dcsm", a))
        for a in ALPHAS
    ]
    rows += [
        Row(
            f"simonyan alpha={a:g}",
            Setting("simonyan", (("alpha", a),)),
            PAPER_SIMONYAN_ALPHA.get(a),
            point=("simonyan", a),
        )
        for a in ALPHAS
    ]
    return tuple(rows)


TABLES: dict[str, Table] = {
    "1": Table(
        "1",
        "Table 1: the tanh gain alpha of Eq. 5, DCSM and Simonyan",
        _alpha_rows(),
        "paper: DCSM best at alpha = 3 (44.1), Simonyan at alpha = 8 or 9 (33.8); the paper has "
        "no alpha = 1 row, no alpha = 8 for DCSM and no alpha = 1, 2 for Simonyan",
        knob="alpha",
    ),
    "2": Table(
        "2",
        "Table 2: the layers whose derivatives are used (a block = its three conv layers)",
        (
            Row("block 3", dcsm(layers=block(3)), 32.5),
            Row("block 4", dcsm(layers=block(4)), 40.3),
            Row("block 5", dcsm(layers=block(5)), 26.3),
            Row("blocks 3-5 averaged", dcsm(), 42.8),
        ),
        "paper: block 4 best single block, blocks 3-5 averaged best overall",
    ),
    "3": Table(
        "3",
        "Table 3: input scales (paper: 400, 500, 600 px of a 500 px input)",
        (
            Row("scale 0.8", dcsm(scales=(0.8,)), 41.0),
            Row("scale 1.0", dcsm(scales=(1.0,)), 42.4),
            Row("scale 1.2", dcsm(scales=(1.2,)), 41.8),
            Row("scales 0.8, 1.0, 1.2 averaged", dcsm(), 43.5),
        ),
        "paper: 1.0 best single scale, the three averaged best overall",
    ),
    "4": Table(
        "4",
        "Table 4: N, the minimum number of candidate classes (N = 0: no subtraction)",
        (
            Row(
                "N=0 (no subtraction)",
                Setting("dcsm", (("subtract", False),), min_candidates=0),
                38.2,
                point=("dcsm", 0),
            ),
            *(
                Row(f"N={n}", Setting("dcsm", min_candidates=n), p, point=("dcsm", n))
                for n, p in ((1, 42.2), (2, 43.5), (3, 44.1), (4, 44.2))
            ),
            Row("oracle tags as candidates", Setting("dcsm", candidates="labels"), None),
        ),
        "paper: subtraction always helps; N = 4 best (44.2), N = 3 used elsewhere; no oracle row",
        knob="N",
    ),  # fmt: skip
    "5": Table(
        "5",
        "Table 5: back-propagation through the ReLUs",
        (Row("BP", dcsm(backprop="bp"), 41.2), Row("guided BP", dcsm(), 44.1)),
        "paper: guided BP better",
    ),
    "6": Table(
        "6",
        "Table 6: saliency methods with and without the dense CRF",
        (
            Row("simonyan (alpha 8)", Setting("simonyan"), 33.8),
            Row("dcsm (variant=paper)", dcsm(), 44.1, 40.5),
            Row("dcsm (variant=authors)", dcsm(variant="authors"), None),
            Row("cam", Setting("cam"), None),
            Row("gradcam", Setting("gradcam"), None),
        ),
        "paper: DCSM 40.5 without, 44.1 with the CRF; Simonyan + CRF 33.8 (Table 1); CAM and "
        "Grad-CAM are not in the paper",
        all_checkpoints=True,
    ),
}

HOLDOUT = "holdout"
#: Every table id in the order they are computed by default.
ALL_TABLES = (*TABLES, HOLDOUT)
