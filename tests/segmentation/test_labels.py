from __future__ import annotations

import pytest
import torch

from dcsm_lightning.segmentation.labels import VOID, labels_from_maps, maps_to_probs


def _hand_maps() -> tuple[torch.Tensor, torch.Tensor]:
    # K = 3 classes on a 1 x 3 image; class 1 is not a candidate.
    maps = torch.tensor(
        [
            [[0.8, 0.1, 0.40]],  # class 0
            [[0.9, 0.95, 0.9]],  # class 1 (not a candidate: must be ignored)
            [[0.3, 0.2, 0.60]],  # class 2
        ]
    )
    return maps, torch.tensor([True, False, True])


def test_eq7_hand_example() -> None:
    maps, cand = _hand_maps()
    probs, ids = maps_to_probs(maps, cand)
    # background = 1 - max over candidates {0, 2}
    expected = torch.tensor([[[0.2, 0.8, 0.4]], [[0.8, 0.1, 0.4]], [[0.3, 0.2, 0.6]]])
    torch.testing.assert_close(probs, expected)
    assert ids.tolist() == [0, 1, 3] and ids.dtype == torch.int64
    # pixel 0: class 0 (id 1); pixel 1: background; pixel 2: class 2 (id 3)
    assert labels_from_maps(maps, cand).tolist() == [[1, 0, 3]]


def test_no_candidates_is_all_background() -> None:
    maps = torch.rand(2, 4, 5, generator=torch.Generator().manual_seed(0))
    probs, ids = maps_to_probs(maps, torch.zeros(2, dtype=torch.bool))
    assert ids.tolist() == [0]
    torch.testing.assert_close(probs, torch.ones(1, 4, 5))
    assert (labels_from_maps(maps, torch.zeros(2, dtype=torch.bool)) == 0).all()


def test_tie_goes_to_background() -> None:
    maps = torch.full((1, 2, 2), 0.5)
    assert (labels_from_maps(maps, torch.tensor([True])) == 0).all()


def test_batch_matches_single_and_argmax_of_probs() -> None:
    g = torch.Generator().manual_seed(1)
    maps = torch.rand(3, 5, 6, 7, generator=g)
    cand = torch.rand(3, 5, generator=g) > 0.5
    cand[0] = False
    valid = torch.ones(3, 6, 7, dtype=torch.bool)
    valid[:, 4:] = False
    valid[1, :, 5:] = False
    labels = labels_from_maps(maps, cand, valid)
    assert labels.shape == (3, 6, 7) and labels.dtype == torch.int64
    probs_list, ids_list = maps_to_probs(maps, cand)
    for i in range(3):
        probs, ids = maps_to_probs(maps[i], cand[i])
        torch.testing.assert_close(probs, probs_list[i])
        assert torch.equal(ids, ids_list[i])
        expected = ids[probs.argmax(0)].masked_fill(~valid[i], VOID)
        assert torch.equal(labels[i], expected)
        assert torch.equal(labels_from_maps(maps[i], cand[i], valid[i]), labels[i])
    assert (labels[~valid] == VOID).all()


def test_non_contiguous_input() -> None:
    g = torch.Generator().manual_seed(2)
    maps = torch.rand(4, 9, 8, generator=g)
    cand = torch.tensor([True, True, False, True])
    nc = maps.transpose(-1, -2)
    assert not nc.is_contiguous()
    assert torch.equal(labels_from_maps(nc, cand), labels_from_maps(nc.contiguous(), cand))


def test_tolerates_rounding_outside_unit_range() -> None:
    maps = torch.tensor([[[1.0 + 5e-7, -5e-7]]])
    probs, _ = maps_to_probs(maps, torch.tensor([True]))
    assert probs.min() >= 0 and probs.max() <= 1


@pytest.mark.parametrize(
    ("maps", "cand", "valid", "match"),
    [
        (torch.full((2, 3, 3), float("nan")), torch.ones(2, dtype=torch.bool), None, "NaN"),
        (torch.full((2, 3, 3), 1.01), torch.ones(2, dtype=torch.bool), None, r"\[0, 1\]"),
        (torch.full((2, 3, 3), -0.1), torch.ones(2, dtype=torch.bool), None, r"\[0, 1\]"),
        (torch.ones(3, 3), torch.ones(3, dtype=torch.bool), None, "shape"),
        (torch.ones(2, 3, 3, dtype=torch.int64), torch.ones(2, dtype=torch.bool), None, "float"),
        (torch.ones(2, 3, 3), torch.ones(3, dtype=torch.bool), None, "candidates"),
        (torch.ones(2, 3, 3), torch.ones(2), None, "torch.bool"),
        (torch.ones(2, 3, 3), torch.ones(2, dtype=torch.bool), torch.ones(3, 4).bool(), "valid"),
        (torch.ones(2, 3, 3), torch.ones(2, dtype=torch.bool), torch.ones(3, 3), "valid"),
    ],
)
def test_bad_inputs(maps, cand, valid, match) -> None:
    with pytest.raises(ValueError, match=match):
        labels_from_maps(maps, cand, valid)
    if valid is None:
        with pytest.raises(ValueError, match=match):
            maps_to_probs(maps, cand)


def test_not_a_tensor() -> None:
    with pytest.raises(TypeError, match="maps"):
        maps_to_probs([[[0.5]]], torch.tensor([True]))  # type: ignore[arg-type]


def test_maps_from_label_logits_hand_example_and_eq7_gives_the_argmax() -> None:
    from dcsm_lightning.segmentation.labels import maps_from_label_logits

    # one pixel, p = softmax(log [2, 1, 5]) = [0.25, 0.125, 0.625]: M^c = p_c / (p_0 + p_max)
    logits = torch.tensor([2.0, 1.0, 5.0]).log()[:, None, None]
    torch.testing.assert_close(
        maps_from_label_logits(logits)[:, 0, 0], torch.tensor([1 / 7, 5 / 7])
    )
    g = torch.Generator().manual_seed(0)
    logits = (
        torch.randn(3, 5, 8, 8, generator=g) * torch.tensor([1.0, 10.0, 100.0])[:, None, None, None]
    )
    maps = maps_from_label_logits(logits)
    assert maps.shape == (3, 4, 8, 8) and maps.min() >= 0 and maps.max() <= 1
    everything = torch.ones(3, 4, dtype=torch.bool)
    assert torch.equal(labels_from_maps(maps, everything), logits.argmax(1))
