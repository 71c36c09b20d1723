"""Guided back-propagation (Springenberg et al. 2015) as a context manager of ReLU hooks.

Inside :func:`guided_backprop`, every ``nn.ReLU`` of the model lets only positive gradients
through: for ReLU input ``x`` and incoming gradient ``g`` (w.r.t. the ReLU's output),
``dL/dx = max(g, 0) * [x > 0]``. This is exactly Captum's ``GuidedBackprop`` rule
(``relu(grad_input)``), and the gradient *at* a ReLU's output (what the next layer reads) is
left untouched: the rule acts on what passes *through* the ReLU. Functional ``F.relu`` calls
are not affected, as in Captum.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn


class _PositiveGradientGate(torch.autograd.Function):
    """Identity in the forward pass; clamps the gradient to ``>= 0`` in the backward pass."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        return grad.clamp(min=0)


def _gate_relu_output(module: nn.Module, args: Any, output: Any) -> Any:
    if isinstance(output, torch.Tensor) and output.requires_grad:
        # relu backward masks by [x > 0]; the gate before it drops negative gradients.
        return _PositiveGradientGate.apply(output)
    return None


@contextmanager
def guided_backprop(model: nn.Module) -> Iterator[None]:
    """Apply the guided back-propagation rule to every ``nn.ReLU`` of ``model`` run inside.

    The rule is recorded in the autograd graph during the forward pass, so a forward pass
    run inside the block is back-propagated with it, even after the block has exited. The
    hooks are removed on exit, also when an error is raised.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> net = nn.Sequential(nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 1))
        >>> x = torch.ones(1, 2, requires_grad=True)
        >>> with guided_backprop(net):
        ...     y = net(x)
        >>> grad, = torch.autograd.grad(y.sum(), x)
    """
    handles = [
        m.register_forward_hook(_gate_relu_output)
        for m in model.modules()
        if isinstance(m, nn.ReLU)
    ]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()
