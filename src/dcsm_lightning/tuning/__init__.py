"""Settings chosen on a few labelled images: the search behind ``dcsm-lightning tune``.

``grid`` (the knobs and their values), ``maps`` (the tuning images and each strategy's maps),
``search`` (scoring and the searches), ``cross_validation`` (k-fold estimate), ``tune`` (the
whole search), ``images`` (which images), ``report`` (``tuned.yaml`` and the table).
"""

from dcsm_lightning.tuning.grid import Grid, Knob, default_grid
from dcsm_lightning.tuning.images import draw_indices, split_loader, tuning_loader
from dcsm_lightning.tuning.report import tuned_config, write_tuning
from dcsm_lightning.tuning.search import Evaluator, coordinate_search, exhaustive_search
from dcsm_lightning.tuning.tune import Tuning, tune_segmentation

__all__ = [
    "Evaluator",
    "Grid",
    "Knob",
    "Tuning",
    "coordinate_search",
    "default_grid",
    "draw_indices",
    "exhaustive_search",
    "split_loader",
    "tune_segmentation",
    "tuned_config",
    "tuning_loader",
    "write_tuning",
]
