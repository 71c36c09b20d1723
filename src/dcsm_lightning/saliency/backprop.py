"""One forward pass per scale, then the candidates' seeds back through the shared graph.

:func:`class_gradients` runs the model once with hooks that capture the feature maps of the
named layers (or differentiates w.r.t. the image), and back-propagates one seed per candidate
slot: slot j's seed picks the j-th candidate class of every image (zero for images with fewer
candidates), so a batch needs max_b #candidates(b) backward passes, not B x K. The seeds go
back either as one batched backward (``torch.autograd.grad(..., is_grads_batched=True)``) or
one after the other with ``retain_graph``. Only ``torch.autograd.grad`` is used, so no
``.grad`` is left on any tensor.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from dcsm_lightning.saliency.candidates import CandidateSlots
from dcsm_lightning.saliency.guided import guided_backprop
from dcsm_lightning.saliency.inputs import checked_forward
from dcsm_lightning.saliency.pooling import Pool, pool_scores

At = Literal["input", "output"]
Backprop = Literal["bp", "guided"]


class TensorCapture:
    """Feature maps captured by :func:`capture_tensors`: ``path -> tensor`` of the last forward."""

    def __init__(self) -> None:
        self.tensors: dict[str, torch.Tensor] = {}
        self._versions: dict[str, int] = {}
        self._calls: dict[str, int] = {}

    def record(self, path: str, tensor: torch.Tensor) -> None:
        self.tensors[path] = tensor
        self._versions[path] = tensor._version
        self._calls[path] = self._calls.get(path, 0) + 1

    def checked(self, paths: Sequence[str]) -> list[torch.Tensor]:
        """The captured tensors in ``paths`` order, each checked to be unique and unmodified.

        Raises:
            ValueError: a layer did not run, ran more than once, or its tensor was modified
                in place afterwards (an inplace op, e.g. ``nn.ReLU(inplace=True)``: the
                derivative would belong to another tensor).
        """
        out = []
        for path in paths:
            if path not in self.tensors:
                raise ValueError(f"layer {path!r} did not run in the model's forward pass")
            if self._calls[path] > 1:
                raise ValueError(
                    f"layer {path!r} ran {self._calls[path]} times in one forward pass; "
                    "its feature map is ambiguous (pick a module that runs once)"
                )
            if self.tensors[path]._version != self._versions[path]:
                raise ValueError(
                    f"the feature map of layer {path!r} was modified in place later in the forward "
                    "pass (inplace op such as nn.ReLU(inplace=True)); pick the next layer or use "
                    "at='input' / at='output' on the other side of the inplace op"
                )
            out.append(self.tensors[path])
        return out


def _differentiable(tensor: torch.Tensor, requires_grad: bool) -> tuple[torch.Tensor, bool]:
    """The tensor itself when it is in the graph, else a copy of a fresh leaf that requires grad.

    The copy (not the leaf) goes on through the model, so an inplace op on it is reported by
    :meth:`TensorCapture.checked` instead of failing inside autograd.
    """
    if requires_grad and not tensor.requires_grad:
        return tensor.detach().requires_grad_(True).clone(), True
    return tensor, False


@contextmanager
def capture_tensors(
    layers: Sequence[tuple[str, nn.Module]], at: At, requires_grad: bool = True
) -> Iterator[TensorCapture]:
    """Capture what each layer reads (``at="input"``, its first argument) or writes (``"output"``).

    When a captured tensor is not in the autograd graph yet (the layers below are frozen),
    it is replaced by a leaf that requires grad, so its derivative can be taken without
    making the image or any parameter require grad. Hooks are removed on exit.
    """
    capture = TensorCapture()

    def pre_hook(path: str) -> Callable[[nn.Module, tuple[Any, ...]], Any]:
        def hook(module: nn.Module, args: tuple[Any, ...]) -> Any:
            if not args or not isinstance(args[0], torch.Tensor):
                raise ValueError(f"layer {path!r} does not take a tensor as its first input")
            tensor, replaced = _differentiable(args[0], requires_grad)
            capture.record(path, tensor)
            return (tensor, *args[1:]) if replaced else None

        return hook

    def forward_hook(path: str) -> Callable[[nn.Module, Any, Any], Any]:
        def hook(module: nn.Module, args: Any, output: Any) -> Any:
            if not isinstance(output, torch.Tensor):
                raise ValueError(f"layer {path!r} does not output a single tensor")
            tensor, replaced = _differentiable(output, requires_grad)
            capture.record(path, tensor)
            return tensor if replaced else None

        return hook

    if at not in ("input", "output"):
        raise ValueError(f"at must be 'input' or 'output', got {at!r}")
    handles = []
    try:
        for path, module in layers:
            if at == "input":
                handles.append(module.register_forward_pre_hook(pre_hook(path)))
            else:
                handles.append(module.register_forward_hook(forward_hook(path)))
        yield capture
    finally:
        for handle in handles:
            handle.remove()


def backward_per_slot(
    scores: torch.Tensor,
    targets: Sequence[torch.Tensor],
    slots: CandidateSlots,
    batched: bool,
    reduce: Callable[[torch.Tensor], torch.Tensor] = lambda g: g,
    names: Sequence[str] | None = None,
) -> list[torch.Tensor]:
    """Derivatives of every slot's class score w.r.t. each target, reduced: N x B x ... per target.

    Args:
        scores: B x K pooled scores in the graph (their gradient is the seed).
        targets: tensors to differentiate w.r.t. (each B x ...).
        slots: the candidates; slot j's seed is one-hot on each image's j-th candidate.
        batched: one ``is_grads_batched`` backward for all N seeds, else N backwards.
        reduce: applied to each raw gradient (N x B x ... or B x ...) as soon as it exists,
            to keep memory low (e.g. :func:`~dcsm_lightning.saliency.max_abs_over_channels`).
        names: names of the targets for error messages.

    Raises:
        ValueError: a target does not influence the scores.
    """
    seeds = slots.seeds(scores.dtype)
    n = seeds.shape[0]

    def grads_of(seed: torch.Tensor, retain: bool, is_batched: bool) -> tuple[torch.Tensor, ...]:
        grads = torch.autograd.grad(
            scores,
            list(targets),
            seed,
            retain_graph=retain,
            allow_unused=True,
            is_grads_batched=is_batched,
        )
        for i, g in enumerate(grads):
            if g is None:
                label = names[i] if names else f"target {i}"
                raise ValueError(f"{label} does not influence the model output")
        return grads

    if batched and n > 1:
        return [reduce(g) for g in grads_of(seeds, False, True)]
    per_target: list[list[torch.Tensor]] = [[] for _ in targets]
    for j in range(n):
        for bucket, g in zip(per_target, grads_of(seeds[j], j < n - 1, False), strict=True):
            bucket.append(reduce(g))
    return [torch.stack(bucket) for bucket in per_target]


@dataclass
class ClassGradients:
    """Result of :func:`class_gradients` at one scale.

    Attributes:
        grads: per target, the reduced derivatives N x B x ... (slot-major).
        activations: per target, the captured tensor B x ... (detached).
        output: the model output (detached), B x K or B x K x h x w.
    """

    grads: list[torch.Tensor]
    activations: list[torch.Tensor]
    output: torch.Tensor


def class_gradients(
    model: nn.Module,
    image: torch.Tensor,
    slots: CandidateSlots,
    layers: Sequence[tuple[str, nn.Module]] | None,
    at: At = "input",
    seed: Pool = "sum",
    backprop: Backprop = "bp",
    batched: bool = False,
    reduce: Callable[[torch.Tensor], torch.Tensor] = lambda g: g,
) -> ClassGradients:
    """One forward pass of ``image``, then the slots' derivatives w.r.t. layers or the image.

    Args:
        model: the model (its parameters need not require grad).
        image: float B x C x H' x W' (already at the wanted scale).
        slots: the candidate slots.
        layers: resolved ``(path, module)`` pairs; None differentiates w.r.t. the image.
        at: ``"input"``: the feature map each layer reads; ``"output"``: the one it writes.
        seed: the pooling whose gradient seeds the backward: ``"sum"`` (the paper's), ``"max"``,
            ``"avg"`` or a callable (see :func:`~dcsm_lightning.saliency.pool_scores`).
        backprop: ``"bp"`` (plain gradients) or ``"guided"`` (guided ReLU rule).
        batched: one batched backward for all slots.
        reduce: applied to each raw gradient as soon as it exists.
    """
    if layers is not None:
        paths = [p for p, _ in layers]
        twice = sorted({p for p in paths if paths.count(p) > 1})
        if twice:
            raise ValueError(f"layers name the same module more than once: {twice}")
    with ExitStack() as stack:
        if backprop == "guided":
            stack.enter_context(guided_backprop(model))
        elif backprop != "bp":
            raise ValueError(f"backprop must be 'bp' or 'guided', got {backprop!r}")
        if layers is None:
            image = image.detach().requires_grad_(True)
            capture = None
        else:
            capture = stack.enter_context(capture_tensors(layers, at))
        output = checked_forward(model, image, slots.num_classes)
    names = None if layers is None else [p for p, _ in layers]
    targets = [image] if capture is None else capture.checked(names)
    grads = backward_per_slot(
        pool_scores(output, seed),
        targets,
        slots,
        batched,
        reduce,
        names=None if names is None else [f"layer {n!r}" for n in names],
    )
    return ClassGradients(grads, [t.detach() for t in targets], output.detach())
