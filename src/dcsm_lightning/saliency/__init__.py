"""Class saliency maps: strategies ``maps = strategy(model, image, candidates)`` and their pieces.

Built-in strategies (registry name -> class): ``simonyan`` -> :class:`Simonyan`,
``layer_gradient`` -> :class:`LayerGradient`, ``dcsm`` -> :class:`DCSM`, ``gradcam`` ->
:class:`GradCAM`, ``cam`` -> :class:`CAM`. Third-party strategies come in through the
entry-point group ``dcsm_lightning.saliency``.
"""

from dcsm_lightning.saliency.backprop import backward_per_slot, capture_tensors, class_gradients
from dcsm_lightning.saliency.base import SaliencyStrategy, preserved_model_state
from dcsm_lightning.saliency.cam import CAM, GradCAM, classifier_weight
from dcsm_lightning.saliency.candidates import CandidateSlots, select_candidates
from dcsm_lightning.saliency.dcsm import DCSM
from dcsm_lightning.saliency.equations import (
    average_maps,
    max_abs_over_channels,
    normalize_by_max,
    positive_pair_differences,
    subtract_other_candidates,
    tanh_normalize,
    upsample_maps,
)
from dcsm_lightning.saliency.gradients import BLOCKS_3_TO_5, LayerGradient, Simonyan
from dcsm_lightning.saliency.guided import guided_backprop
from dcsm_lightning.saliency.layers import resolve_layer, resolve_layers
from dcsm_lightning.saliency.registry import (
    ENTRY_POINT_GROUP,
    clear_discovery_cache,
    create_saliency,
    get_saliency_class,
    list_saliency,
    register_saliency,
)

__all__ = [
    "BLOCKS_3_TO_5",
    "CAM",
    "DCSM",
    "ENTRY_POINT_GROUP",
    "CandidateSlots",
    "GradCAM",
    "LayerGradient",
    "SaliencyStrategy",
    "Simonyan",
    "average_maps",
    "backward_per_slot",
    "capture_tensors",
    "class_gradients",
    "classifier_weight",
    "clear_discovery_cache",
    "create_saliency",
    "get_saliency_class",
    "guided_backprop",
    "list_saliency",
    "max_abs_over_channels",
    "normalize_by_max",
    "positive_pair_differences",
    "preserved_model_state",
    "register_saliency",
    "resolve_layer",
    "resolve_layers",
    "select_candidates",
    "subtract_other_candidates",
    "tanh_normalize",
    "upsample_maps",
]
