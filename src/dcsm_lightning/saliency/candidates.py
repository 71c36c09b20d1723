"""Candidate classes (Sec. 3.3): which classes of an image get a saliency map.

:func:`select_candidates` picks them from class probabilities, :func:`candidates_from_scores`
from a model's raw output (B x K or a score map); :class:`CandidateSlots` packs
a B x K candidate mask into "slots" (the j-th candidate of each image) so that the j-th
backward pass can serve every image of a batch at once.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from dcsm_lightning.saliency.pooling import Pool, model_pool, pool_scores


def select_candidates(
    probs: torch.Tensor, threshold: float = 0.5, min_candidates: int = 3
) -> torch.Tensor:
    """Classes with probability above ``threshold``, topped up by rank to ``min_candidates``.

    The paper uses ``threshold=0.5`` and ``min_candidates=3`` (N = 3, Table 4): every class
    whose sigmoid score exceeds 0.5 is a candidate, and when fewer than N are, the
    highest-scoring others are added until there are N. Ties in rank go to the lower class
    index. The top-up never makes every class a candidate: it is skipped when K <= N (with
    K = 3 classes and N = 3 every class would be a candidate on every image, and Eq. 4 would
    subtract every class from every other); ``min_candidates=0`` disables it. Classes above
    ``threshold`` are always candidates. The probabilities should come from the forward pass
    at scale 1.0.

    Args:
        probs: float B x K class probabilities (sigmoid of the pooled scores).
        threshold: a class is a candidate when its probability is strictly greater.
        min_candidates: N, the minimum number of candidates per image (0, or N >= K: no
            top-up).

    Returns:
        bool B x K, True for candidates.

    Raises:
        ValueError: ``probs`` is not a floating B x K tensor of values in [0, 1] (e.g. logits),
            ``threshold`` is not in [0, 1] (or NaN), or ``min_candidates < 0``.

    Example:
        >>> probs = torch.tensor([[0.9, 0.2, 0.6, 0.1], [0.1, 0.3, 0.2, 0.05]])
        >>> select_candidates(probs, 0.5, 3)
        tensor([[ True,  True,  True, False],
                [ True,  True,  True, False]])
        >>> select_candidates(probs[:, :3], 0.5, 3)  # K = 3 <= N: no top-up
        tensor([[ True, False,  True],
                [False, False, False]])
    """
    if not isinstance(probs, torch.Tensor) or probs.ndim != 2 or not probs.is_floating_point():
        got = (
            f"{probs.dtype} tensor of shape {tuple(probs.shape)}"
            if isinstance(probs, torch.Tensor)
            else type(probs).__name__
        )
        raise ValueError(f"probs must be a float tensor of shape B x K, got {got}")
    if not torch.isfinite(probs).all():
        raise ValueError("probs contains NaN or Inf")
    if probs.numel() and (probs.min() < 0 or probs.max() > 1):
        raise ValueError(
            f"probs must be probabilities in [0, 1], got values in [{float(probs.min()):.4g}, "
            f"{float(probs.max()):.4g}]: pass torch.sigmoid(logits), not the logits"
        )
    if not 0.0 <= threshold <= 1.0:  # also refuses NaN
        raise ValueError(f"threshold must be a number in [0, 1], got {threshold}")
    if min_candidates < 0:
        raise ValueError(f"min_candidates must be >= 0, got {min_candidates}")
    chosen = probs > threshold
    top = int(min_candidates) if probs.shape[1] > min_candidates else 0
    if top > 0:
        order = torch.sort(probs, dim=1, descending=True, stable=True).indices[:, :top]
        chosen = chosen.scatter(1, order, True)
    return chosen


def candidates_from_scores(
    scores: torch.Tensor,
    pool: Pool | None = "max",
    threshold: float = 0.5,
    min_candidates: int = 3,
    model: torch.nn.Module | None = None,
) -> torch.Tensor:
    """Candidates from a model's raw output: ``select_candidates(sigmoid(pool(scores)))``.

    The direct Python API's first step: ``candidates = candidates_from_scores(model(image),
    "avg")``, then ``maps = strategy(model, image, candidates)``.

    Args:
        scores: float logits B x K or a score map B x K x h x w.
        pool: how a score map becomes B x K (``"max"``, ``"avg"`` or a callable, see
            :func:`~dcsm_lightning.saliency.pool_scores`); None: ``model``'s own
            ``score_pool`` (else ``"max"``).
        threshold, min_candidates: see :func:`select_candidates`.
        model: the model, read only when ``pool`` is None.

    Returns:
        bool B x K, True for candidates.

    Raises:
        ValueError: ``scores`` is not B x K or B x K x h x w, or see :func:`select_candidates`.

    Example:
        >>> score_map = torch.tensor([[[[4.0, -4.0]], [[-1.0, -3.0]]]])  # B=1, K=2, 1 x 2
        >>> candidates_from_scores(score_map, "max", min_candidates=0)
        tensor([[ True, False]])
        >>> candidates_from_scores(score_map, "avg", min_candidates=0)  # mean 0 -> p = 0.5
        tensor([[False, False]])
    """
    if not isinstance(scores, torch.Tensor) or scores.ndim not in (2, 4):
        got = tuple(scores.shape) if isinstance(scores, torch.Tensor) else type(scores).__name__
        raise ValueError(f"scores must be logits B x K or a score map B x K x h x w, got {got}")
    if pool is None:
        pool = "max" if model is None else model_pool(model)
    probs = torch.sigmoid(pool_scores(scores.detach(), pool).float())
    return select_candidates(probs, threshold, min_candidates)


@dataclass(frozen=True)
class CandidateSlots:
    """A B x K candidate mask packed into N slots per image (N = max candidates per image).

    Slot j of image b holds its j-th candidate class (ascending class index); images with
    fewer candidates have ``valid[b, j] = False`` there.

    Attributes:
        classes: int64 B x N, the class of each slot (0 where not valid).
        valid: bool B x N.
        num_classes: K.
    """

    classes: torch.Tensor
    valid: torch.Tensor
    num_classes: int

    @classmethod
    def from_mask(cls, candidates: torch.Tensor) -> CandidateSlots:
        """Pack a bool B x K candidate mask."""
        batch, num_classes = candidates.shape
        counts = candidates.sum(1)
        n = int(counts.max()) if batch else 0
        # Stable sort puts the candidates first, in ascending class order.
        order = torch.sort((~candidates).to(torch.uint8), dim=1, stable=True).indices[:, :n]
        valid = torch.arange(n, device=candidates.device)[None, :] < counts[:, None]
        return cls(torch.where(valid, order, torch.zeros_like(order)), valid, num_classes)

    @property
    def num_slots(self) -> int:
        """N, the number of backward passes needed."""
        return self.classes.shape[1]

    def seeds(self, dtype: torch.dtype) -> torch.Tensor:
        """One-hot backward seeds N x B x K: seed j picks each image's j-th candidate (or 0)."""
        onehot = torch.nn.functional.one_hot(self.classes, self.num_classes).to(dtype)
        return (onehot * self.valid[..., None]).transpose(0, 1)

    def gather(self, per_class: torch.Tensor) -> torch.Tensor:
        """Values B x K x ... -> B x N x ... of each slot's class."""
        index = self.classes.reshape(*self.classes.shape, *([1] * (per_class.ndim - 2)))
        return per_class.gather(1, index.expand(-1, -1, *per_class.shape[2:]))

    def scatter(self, maps: torch.Tensor) -> torch.Tensor:
        """Slot maps B x N x H x W -> class maps B x K x H x W, zero for non-candidates."""
        batch = maps.shape[0]
        out = maps.new_zeros(batch, self.num_classes, *maps.shape[2:])
        rows = torch.arange(batch, device=maps.device)[:, None].expand_as(self.classes)
        out[rows[self.valid], self.classes[self.valid]] = maps[self.valid]
        return out
