"""Eq. 3's per-class derivatives computed by Captum: the ``engine="captum"`` of gradient strategies.

:func:`captum_class_gradients` returns what :func:`~dcsm_lightning.saliency.class_gradients`
returns (one :class:`~dcsm_lightning.saliency.ClassGradients` per scale), so everything after
Eq. 3 is the same code for both engines. Captum attributes one target per call, so this engine
runs one forward and one backward per candidate slot (``class_gradients`` shares one forward
among the slots): it is the reference, not the fast path.

- image gradient: ``captum.attr.Saliency`` (``abs=False``; the strategy takes the max of
  absolute values over channels itself);
- layer derivatives: ``captum.attr.LayerGradientXActivation(..., multiply_by_inputs=False)`` at
  the layers' inputs (``attribute_to_layer_input=True``) or outputs.

Guided back-propagation: Captum's ``GuidedBackprop`` only attributes to the input and the
gradient strategies take it at layers, so the guided ReLU rule is applied while Captum runs by
:func:`~dcsm_lightning.saliency.guided_backprop` (the same rule as Captum's ``GuidedBackprop``,
``relu(grad_input)`` at every ``nn.ReLU``; the tests check them against each other).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import nullcontext

import torch
from torch import nn

from dcsm_lightning.saliency.backprop import At, Backprop, ClassGradients
from dcsm_lightning.saliency.candidates import CandidateSlots
from dcsm_lightning.saliency.guided import guided_backprop
from dcsm_lightning.saliency.inputs import checked_forward
from dcsm_lightning.saliency.pooling import Pool, pool_scores


class ScoreHead(nn.Module):
    """``model`` as Captum's forward function: pooled class scores B x K (the backward seed).

    The output is checked (:func:`~dcsm_lightning.saliency.checked_forward`) and the last
    unpooled output (B x K or B x K x h x w) is kept, detached, in :attr:`output`.
    """

    def __init__(self, model: nn.Module, seed: Pool, num_classes: int | None = None) -> None:
        super().__init__()
        self.model = model
        self.seed = seed
        self.num_classes = num_classes
        self.output: torch.Tensor | None = None

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        out = checked_forward(self.model, image, self.num_classes)
        self.output = out.detach()
        return pool_scores(out, self.seed)


def captum_class_gradients(
    model: nn.Module,
    image: torch.Tensor,
    slots: CandidateSlots,
    layers: Sequence[tuple[str, nn.Module]] | None,
    at: At = "input",
    seed: Pool = "sum",
    backprop: Backprop = "bp",
    reduce: Callable[[torch.Tensor], torch.Tensor] = lambda g: g,
) -> ClassGradients:
    """Like :func:`~dcsm_lightning.saliency.class_gradients`, each slot's derivative from Captum.

    Args:
        model: the model (inside a strategy's session).
        image: float B x C x H' x W'.
        slots: the candidate slots; slot j is attributed with ``target`` = each image's j-th
            candidate class (invalid slots are computed for class 0 and ignored downstream).
        layers: resolved ``(path, module)`` pairs; None differentiates w.r.t. the image.
        at, seed, backprop, reduce: as for ``class_gradients``.

    Returns:
        :class:`~dcsm_lightning.saliency.ClassGradients` with ``grads`` N x B x ... per
        target and ``activations`` empty (Captum does not return them).
    """
    from captum.attr import LayerGradientXActivation, Saliency

    if backprop not in ("bp", "guided"):
        raise ValueError(f"backprop must be 'bp' or 'guided', got {backprop!r}")
    head = ScoreHead(model, seed, slots.num_classes)
    if layers is None:
        attribution = Saliency(head)

        def attribute(target: list[int]) -> list[torch.Tensor]:
            return [attribution.attribute(image, target=target, abs=False)]
    else:
        attribution = LayerGradientXActivation(
            head, [module for _, module in layers], multiply_by_inputs=False
        )

        def attribute(target: list[int]) -> list[torch.Tensor]:
            grads = attribution.attribute(
                image, target=target, attribute_to_layer_input=at == "input"
            )
            return [g[0] if isinstance(g, tuple) else g for g in grads]

    num_targets = 1 if layers is None else len(layers)
    per_target: list[list[torch.Tensor]] = [[] for _ in range(num_targets)]
    for j in range(slots.num_slots):
        with guided_backprop(model) if backprop == "guided" else nullcontext():
            grads = attribute(slots.classes[:, j].tolist())
        for bucket, grad in zip(per_target, grads, strict=True):
            bucket.append(reduce(grad.detach()))
    return ClassGradients([torch.stack(b) for b in per_target], [], head.output)  # type: ignore[arg-type]
