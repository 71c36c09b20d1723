"""``select_candidates`` edge cases and the slot packing used for batched seeds."""

from __future__ import annotations

import pytest
import torch

from dcsm_lightning.saliency import CandidateSlots, select_candidates


def test_all_above_threshold_keeps_all():
    probs = torch.tensor([[0.9, 0.8, 0.7, 0.6, 0.55]])
    assert select_candidates(probs).all()


def test_none_above_threshold_tops_up_by_rank():
    probs = torch.tensor([[0.1, 0.4, 0.05, 0.3, 0.2]])
    assert select_candidates(probs).tolist() == [[False, True, False, True, True]]


def test_threshold_is_strict_and_top_up_adds_to_the_above():
    probs = torch.tensor([[0.5, 0.9, 0.1, 0.2]])
    out = select_candidates(probs, threshold=0.5, min_candidates=1)
    assert out.tolist() == [[False, True, False, False]]
    assert select_candidates(probs, 0.5, 3).tolist() == [[True, True, False, True]]


def test_ties_go_to_the_lower_class_index():
    probs = torch.tensor([[0.2, 0.3, 0.3, 0.3, 0.1]])
    assert select_candidates(probs, 0.5, 2).tolist() == [[False, True, True, False, False]]


def test_top_up_never_makes_every_class_a_candidate_and_zero_disables_it():
    # Issue 19: with K <= N the top-up made every class a candidate on every image (before
    # the fix this returned all True for K = 3, N = 3); it is off there now.
    probs = torch.tensor([[0.1, 0.2, 0.3], [0.9, 0.1, 0.2]])
    expected = [[False, False, False], [True, False, False]]
    assert select_candidates(probs, 0.5, 3).tolist() == expected
    assert select_candidates(probs[:, :2], 0.5, 3).tolist() == [row[:2] for row in expected]
    assert select_candidates(probs, 0.5, 2).sum(1).tolist() == [2, 2]  # K > N: topped up
    assert select_candidates(probs, 0.5, 0).tolist() == expected
    # Classes above the threshold are candidates whatever K: all of them here.
    assert select_candidates(torch.full((1, 3), 0.9), 0.5, 3).all()


@pytest.mark.parametrize(
    "probs",
    [torch.tensor([0.1, 0.9]), torch.tensor([[1, 0]]), torch.tensor([[0.1, float("nan")]])],
)
def test_bad_probs(probs):
    with pytest.raises(ValueError, match="probs"):
        select_candidates(probs)


def test_negative_min_candidates():
    with pytest.raises(ValueError, match="min_candidates"):
        select_candidates(torch.rand(1, 3), min_candidates=-1)


def test_slots_round_trip():
    cands = torch.tensor([[True, False, True, True], [False, True, False, False], [False] * 4])
    slots = CandidateSlots.from_mask(cands)
    assert slots.num_slots == 3
    assert slots.classes.tolist() == [[0, 2, 3], [1, 0, 0], [0, 0, 0]]
    assert slots.valid.tolist() == [[True, True, True], [True, False, False], [False] * 3]
    seeds = slots.seeds(torch.float32)
    assert seeds.shape == (3, 3, 4)
    assert seeds[1].tolist() == [[0, 0, 1, 0], [0, 0, 0, 0], [0, 0, 0, 0]]
    maps = torch.rand(3, 3, 2, 2)
    full = slots.scatter(maps)
    assert torch.equal(full[0, 2], maps[0, 1]) and torch.equal(full[1, 1], maps[1, 0])
    assert torch.equal(full[~cands], torch.zeros(int((~cands).sum()), 2, 2))
    assert torch.equal(slots.gather(full)[slots.valid], maps[slots.valid])
