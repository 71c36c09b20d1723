"""Class saliency maps: strategies ``maps = strategy(model, image, candidates)`` and their pieces.

Built-in strategies (registry name -> class): ``simonyan`` -> :class:`Simonyan`,
``layer_gradient`` -> :class:`LayerGradient`, ``dcsm`` -> :class:`DCSM`, ``gradcam`` ->
:class:`GradCAM`, ``cam`` -> :class:`CAM`, ``captum`` -> :class:`CaptumAttribution` (any
``captum.attr`` method), ``distinct`` -> :class:`Distinct` (Eq. 4 on any strategy).
Third-party strategies come in through the entry-point group ``dcsm_lightning.saliency``.

Writing a strategy: subclass :class:`SaliencyStrategy` and override
:meth:`SaliencyStrategy.scale_maps`; :func:`class_gradients`, :func:`max_pool_scores`,
:func:`pool_scores`, :func:`checked_forward`, :func:`resolve_layer` and the equation
functions are the building blocks the built-in strategies use. A strategy whose tanh gain
``alpha`` is its last step may subclass :class:`SeparateGain` instead (``before_gain`` and
``gain``), so that ``tune`` computes its maps once for every ``alpha``. Layer-based strategies given
no layers take the model's own (:func:`default_layers`); a score map is pooled as the model
was trained (:func:`model_pool`, :func:`pool_scores`); :func:`candidates_from_scores` picks
candidates from a model's raw output.
"""

from dcsm_lightning.saliency.backprop import ClassGradients, capture_tensors, class_gradients
from dcsm_lightning.saliency.base import SaliencyStrategy
from dcsm_lightning.saliency.cam import CAM, GradCAM
from dcsm_lightning.saliency.candidates import (
    CandidateSlots,
    candidates_from_scores,
    select_candidates,
)
from dcsm_lightning.saliency.captum_attribution import CaptumAttribution
from dcsm_lightning.saliency.dcsm import DCSM
from dcsm_lightning.saliency.default_layers import (
    BLOCKS_3_TO_5,
    NoDefaultLayers,
    candidate_blocks,
    default_layers,
)
from dcsm_lightning.saliency.distinct import Distinct
from dcsm_lightning.saliency.equations import (
    average_maps,
    max_abs_over_channels,
    normalize_by_max,
    positive_pair_differences,
    subtract_other_candidates,
    tanh_normalize,
    upsample_maps,
)
from dcsm_lightning.saliency.gain import SeparateGain
from dcsm_lightning.saliency.gradients import LayerGradient, Simonyan
from dcsm_lightning.saliency.guided import guided_backprop
from dcsm_lightning.saliency.inputs import checked_forward, max_pool_scores
from dcsm_lightning.saliency.layers import resolve_layer, resolve_layers
from dcsm_lightning.saliency.pooling import model_pool, pool_scores
from dcsm_lightning.saliency.registry import (
    ENTRY_POINT_GROUP,
    as_saliency,
    create_saliency,
    get_saliency_class,
    list_saliency,
    register_saliency,
    saliency_spec_type,
)

__all__ = [
    "BLOCKS_3_TO_5",
    "CAM",
    "DCSM",
    "ENTRY_POINT_GROUP",
    "CandidateSlots",
    "CaptumAttribution",
    "ClassGradients",
    "Distinct",
    "GradCAM",
    "LayerGradient",
    "NoDefaultLayers",
    "SaliencyStrategy",
    "SeparateGain",
    "Simonyan",
    "as_saliency",
    "average_maps",
    "candidate_blocks",
    "candidates_from_scores",
    "capture_tensors",
    "checked_forward",
    "class_gradients",
    "create_saliency",
    "default_layers",
    "get_saliency_class",
    "guided_backprop",
    "list_saliency",
    "max_abs_over_channels",
    "max_pool_scores",
    "model_pool",
    "normalize_by_max",
    "pool_scores",
    "positive_pair_differences",
    "register_saliency",
    "resolve_layer",
    "resolve_layers",
    "saliency_spec_type",
    "select_candidates",
    "subtract_other_candidates",
    "tanh_normalize",
    "upsample_maps",
]
