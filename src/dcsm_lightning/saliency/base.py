"""``SaliencyStrategy``: the base class that owns model state, inputs, candidates and scales.

A strategy is called as ``maps = strategy(model, image, candidates)``. The base class checks
the inputs, puts the model in the state saliency needs and restores it afterwards, selects
candidates when none are given, loops over the scales and scatters the candidates' maps into
a B x K x H x W tensor. A subclass only says what one scale contributes
(:meth:`SaliencyStrategy.scale_maps`, the extension point) and, when it is not the mean, how
scales combine (:meth:`SaliencyStrategy.combine_scales`). The input checks and the model-state
guard are in :mod:`dcsm_lightning.saliency.inputs`.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import ClassVar, Literal

import torch
from torch import nn

from dcsm_lightning.saliency.candidates import CandidateSlots, select_candidates
from dcsm_lightning.saliency.inputs import (
    check_candidates,
    check_choice,
    check_image,
    checked_forward,
    preserved_model_state,
    rescale,
)
from dcsm_lightning.saliency.pooling import Pool, check_pool, model_pool, pool_scores
from dcsm_lightning.segmentation.methods import check_part

#: The backward seed of a class: ``"sum"`` (the paper's), ``"max"`` or ``"pool"`` (the
#: strategy's score pooling, see :meth:`SaliencyStrategy.seed_for`).
Seed = Literal["sum", "max", "pool"]


class SaliencyStrategy(ABC):
    """Base class of class saliency strategies: ``maps = strategy(model, image, candidates)``.

    As input to ``__call__`` a strategy accepts:

    - ``model``: any ``nn.Module`` mapping an image B x 3 x H x W to class scores, either a
      score map B x K x h x w (the paper's FCN) or scores B x K.
    - ``image``: float B x 3 x H x W (may be an inference tensor; it is cloned).
    - ``candidates``: bool B x K, the classes that get a map; None selects them with
      :func:`~dcsm_lightning.saliency.select_candidates` (``threshold``, ``min_candidates``)
      from the forward pass at scale 1.0.

    As output it returns float B x K x H x W in [0, 1], exactly 0 for every non-candidate.

    Writing a strategy: subclass, override :meth:`scale_maps` (one scale's maps of the
    candidate slots) and pass the base options on by keyword (``**kwargs``), so that
    LightningCLI lists them under your class too; override :meth:`setup` to check the model
    before the first batch. Helpers: :func:`class_gradients` (one forward, one backward per
    candidate slot, seeded by :meth:`seed_for`), :func:`max_pool_scores`, :func:`pool_scores`,
    :func:`checked_forward`, :func:`resolve_layer`, :func:`upsample_maps`,
    :func:`normalize_by_max`; register it with :func:`register_saliency` or an entry point::

        class InputTimesGradient(SaliencyStrategy):
            def __init__(self, *, gain: float = 1.0, **kwargs: Any) -> None:
                super().__init__(**kwargs)
                self.gain = gain

            def scale_maps(self, model, image, slots, size):
                seed = self.seed_for(model)
                grads = class_gradients(model, image, slots, None, seed=seed).grads[0]
                maps = (grads * image).abs().amax(dim=2).transpose(0, 1)  # B x N x h x w
                return normalize_by_max(upsample_maps(self.gain * maps, size))

    Model state: during the call the model is in eval mode (BatchNorm uses its running
    statistics, Dropout is off) and its parameters do not require gradients (only the
    feature maps or the image are differentiated, so no ``.grad`` is ever written). Every
    module's ``training`` flag and every parameter's ``requires_grad`` are restored
    afterwards, and all hooks removed, also when an error is raised.

    Autograd: the call runs under ``torch.inference_mode(False)`` and ``torch.enable_grad()``
    of its own, so it may be called from Lightning's validation / predict steps, which run
    under inference mode. The model's parameters must be normal tensors (not created under
    inference mode).

    Scales: for each ``s`` in ``scales`` the image is resized to ``round(s*H) x round(s*W)``
    (bilinear, ``align_corners=False``) and the scale's maps are brought back to H x W.

    Args:
        name: the name under which maps are logged (default: the registry name); two
            configured instances of one strategy need different names. It names methods
            (``dcsm+crf``), so it may not hold ``+`` or ``/``.
        scales: input scales whose maps are combined (averaged unless the strategy says
            otherwise).
        seed: backward seed of a class: ``"sum"`` (the paper: 1 at every position of the
            class's score map), ``"max"`` (the global-max-pooled score) or ``"pool"`` (the
            score pooled by ``pool``: e.g. ``"avg"`` for an average-pooled model; a callable
            pooling is differentiated as it is). Ignored for B x K outputs, where all are the
            score itself.
        pool: how a score map B x K x h x w becomes scores B x K for the candidates (and for
            ``seed="pool"``): ``"max"``, ``"avg"`` or a callable; None (default): the model's
            own ``score_pool`` attribute when it declares one, else ``"max"`` (see
            :func:`~dcsm_lightning.saliency.model_pool`).
        threshold: candidate probability threshold when ``candidates`` is None.
        min_candidates: candidate top-up size when ``candidates`` is None (0: no top-up; see
            :func:`~dcsm_lightning.saliency.select_candidates`).
        batched_backward: send the candidates' seeds back through the shared graph as one
            batched backward (``is_grads_batched=True``, True) or one by one (False); None
            picks by device (see :meth:`use_batched_backward`).

    Raises:
        ValueError: bad options here (a ``name`` with ``+`` or ``/``); in ``__call__`` a bad
            ``image`` (not float B x C x H x W,
            NaN / Inf), ``candidates`` (not bool B x K) or model output (not B x K or
            B x K x h x w, NaN / Inf scores), or an unknown layer name.
    """

    #: Registry name, also the default ``name`` (set by ``register_saliency``).
    default_name: ClassVar[str] = "saliency"

    def __init__(
        self,
        *,
        name: str | None = None,
        scales: Sequence[float] = (1.0,),
        seed: Seed = "sum",
        pool: Pool | None = None,
        threshold: float = 0.5,
        min_candidates: int = 3,
        batched_backward: bool | None = None,
    ) -> None:
        self.name = check_part(self.default_name if name is None else str(name), "strategy")
        self.scales = tuple(float(s) for s in scales)
        if not self.scales or not all(math.isfinite(s) and s > 0 for s in self.scales):
            raise ValueError(
                f"scales must be a non-empty sequence of positive numbers, got {scales!r}"
            )
        check_choice("seed", seed, ("sum", "max", "pool"))
        if pool is not None:
            check_pool(pool)
        self.seed = seed
        self.pool = pool
        self.threshold = float(threshold)
        if min_candidates < 0:
            raise ValueError(f"min_candidates must be >= 0, got {min_candidates}")
        self.min_candidates = int(min_candidates)
        self.batched_backward = batched_backward

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({args})"

    def use_batched_backward(self, device: torch.device) -> bool:
        """Whether to use one batched backward on ``device``: the option, else by device.

        Auto (None) batches on CUDA only. ``benchmarks/saliency_speed.py --repeats 3`` on 2
        CPU cores (VGG-16, 500 x 500, 3 scales, best of 3): one seed at a time beat the batched
        backward, 9.97 s vs 10.21 s (9 layers, N = 3) and 19.3 s vs 20.5 s (9 layers, N = 6,
        peak memory 554 vs 904 MiB); on the small backbone at 96 px both took the same time.
        On CUDA one batched backward saves N - 1 rounds of kernel launches (not measured here:
        no GPU); MPS and other devices go one seed at a time (thinner vmap coverage). Set
        ``batched_backward`` to override.
        """
        if self.batched_backward is not None:
            return bool(self.batched_backward)
        return device.type == "cuda"

    def __call__(
        self, model: nn.Module, image: torch.Tensor, candidates: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Maps float B x K x H x W in [0, 1] of the candidate classes (see the class docstring)."""
        check_image(image)
        if candidates is not None:
            check_candidates(candidates, image.shape[0])
        with self.session(model):
            image = image.detach().clone()
            size = (image.shape[-2], image.shape[-1])
            if candidates is None:
                candidates = self.pick_candidates(model, image)
            slots = CandidateSlots.from_mask(candidates.to(image.device))
            if slots.num_slots == 0:
                with torch.no_grad():
                    checked_forward(model, image, slots.num_classes)
                return image.new_zeros(image.shape[0], slots.num_classes, *size)
            parts = (self.scale_maps(model, rescale(image, s), slots, size) for s in self.scales)
            return self.scatter_scales(parts, slots).detach()

    def pick_candidates(self, model: nn.Module, image: torch.Tensor) -> torch.Tensor:
        """Candidates bool B x K from one forward at scale 1.0 (``threshold``, ``min_candidates``).

        Args:
            model: the model (already in the :meth:`session` state).
            image: float B x 3 x H x W.
        """
        with torch.no_grad():
            scores = pool_scores(checked_forward(model, image), model_pool(model, self.pool))
        return select_candidates(torch.sigmoid(scores), self.threshold, self.min_candidates)

    def seed_for(self, model: nn.Module) -> Pool:
        """The pooling whose gradient seeds the backward pass: ``seed``, or ``pool`` resolved.

        ``"sum"`` and ``"max"`` as they are; ``"pool"``: :func:`model_pool` of ``pool`` (the
        option, else the model's ``score_pool``, else ``"max"``). Pass it on as the ``seed``
        of :func:`class_gradients`.
        """
        return model_pool(model, self.pool) if self.seed == "pool" else self.seed

    def setup(self, model: nn.Module) -> None:
        """Check what depends on the model before the first batch (the callback's ``setup``).

        The base checks the model's declared ``score_pool``; layer-based strategies also
        resolve their (default) layers here, so a model they cannot serve fails at once with
        a message saying what to pass. Override to add checks; call ``super().setup(model)``.

        Raises:
            ValueError: the model cannot be served as configured.
        """
        model_pool(model, self.pool)

    @abstractmethod
    def scale_maps(
        self, model: nn.Module, image: torch.Tensor, slots: CandidateSlots, size: tuple[int, int]
    ) -> torch.Tensor:
        """The extension point: one scale's maps of the candidate slots.

        Called once per scale inside :meth:`session` (autograd on, model in eval mode with
        parameters that do not require grad).

        Args:
            model: the model, B x 3 x h' x w' -> scores B x K or a score map B x K x h x w.
            image: float B x 3 x h' x w', the input already resized to this scale.
            slots: the candidates packed into N slots (:class:`CandidateSlots`): slot j of image
                b is class ``slots.classes[b, j]`` where ``slots.valid[b, j]``.
            size: (H, W), the original image size; return maps of that size.

        Returns:
            float B x N x H x W, non-negative, normally in [0, 1] (the scales' maps are
            combined by :meth:`combine_scales`, clamped to [0, 1] and scattered to B x K;
            entries of invalid slots are dropped).
        """

    def combine_scales(self, total: torch.Tensor, num_scales: int) -> torch.Tensor:
        """Combine the sum B x N x H x W of the scales' :meth:`scale_maps`; default: their mean."""
        return total / num_scales

    def scatter_scales(self, parts: Iterable[torch.Tensor], slots: CandidateSlots) -> torch.Tensor:
        """The strategy's maps from each scale's slot maps: their sum, :meth:`combine_scales`,
        clamped to [0, 1] and scattered to the classes.

        Args:
            parts: one float B x N x H x W per scale of :attr:`scales` (:meth:`scale_maps`).
            slots: the candidates' slots the parts are packed in.

        Returns:
            float B x K x H x W in [0, 1], 0 for the classes that are not candidates.
        """
        total = None
        for part in parts:
            total = part if total is None else total + part
        if total is None:
            raise ValueError("scatter_scales needs one part per scale, got none")
        return slots.scatter(self.combine_scales(total, len(self.scales)).clamp(0, 1))

    @contextmanager
    def session(self, model: nn.Module) -> Iterator[None]:
        """Autograd on, inference mode off, model in eval mode without parameter gradients."""
        if any(p.is_inference() for p in model.parameters()):
            raise ValueError(
                "model parameters are inference tensors (the model was built or loaded under "
                "torch.inference_mode()); saliency needs autograd through them"
            )
        with torch.inference_mode(False), torch.enable_grad(), preserved_model_state(model):
            yield
