"""The tuner's choice against a brute force that never goes through the tuner's code paths."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

from dcsm_lightning import SaliencySegmentation, SegmentationIoU
from dcsm_lightning.crf import CRFSettings
from dcsm_lightning.crf.mean_field import crf_masks
from dcsm_lightning.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from dcsm_lightning.saliency import (
    DCSM,
    CaptumAttribution,
    Distinct,
    GradCAM,
    Simonyan,
    max_pool_scores,
    select_candidates,
)
from dcsm_lightning.saliency.options import strategy_config, with_options
from dcsm_lightning.tuning import (
    coordinate_search,
    exhaustive_search,
    tune_segmentation,
    tuned_config,
)
from dcsm_lightning.tuning.cross_validation import fold_indices
from dcsm_lightning.tuning.grid import Grid, Knob, default_grid, extended, layer_groups
from dcsm_lightning.tuning.maps import GainMaps, LayerMaps, TuningImages, map_source
from dcsm_lightning.tuning.report import edge_notes

K = 3  # classes
GRID = {
    "alpha": (1.0, 3.0, 8.0),
    "bilateral_compat": (1.0, 8.0),
    "min_candidates": (1, 2),
    "scales": ((1.0,), (1.0, 1.5)),
    "bilateral_sxy": (30.0,),
    "bilateral_srgb": (10.0,),
    "iterations": (3,),
}


def _batches() -> list[dict[str, torch.Tensor]]:
    """Two batches of 24 x 24 images: coloured rectangles of 1-2 classes on a grey ground."""
    gen = torch.Generator().manual_seed(3)
    colours = torch.tensor([[220, 40, 40], [40, 200, 60], [50, 60, 230]], dtype=torch.uint8)
    batches = []
    for size in (2, 2):
        rgb = torch.full((size, 24, 24, 3), 120, dtype=torch.uint8)
        mask = torch.zeros(size, 24, 24, dtype=torch.int64)
        labels = torch.zeros(size, K)
        for b in range(size):
            for c in torch.randperm(K, generator=gen)[: 1 + b % 2].tolist():
                y, x = torch.randint(0, 14, (2,), generator=gen).tolist()
                rgb[b, y : y + 10, x : x + 10] = colours[c]
                mask[b, y : y + 10, x : x + 10] = c + 1
                labels[b, c] = 1
        mean, std = torch.tensor(IMAGENET_MEAN), torch.tensor(IMAGENET_STD)
        image = ((rgb.float() / 255 - mean) / std).permute(0, 3, 1, 2).contiguous()
        batches.append({"image": image, "rgb": rgb, "mask": mask, "labels": labels})
    return batches


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
        nn.Conv2d(8, K, 1),
    ).eval()  # fmt: skip


def _brute_force(model: nn.Module, batches, setting: dict) -> float:
    """mIoU + CRF of one setting, straight from the strategy, crf_masks and SegmentationIoU."""
    strategy = DCSM(layers=setting["layers"], scales=setting["scales"], alpha=setting["alpha"])
    crf = CRFSettings(
        iterations=setting["iterations"],
        bilateral_compat=setting["bilateral_compat"],
        bilateral_sxy=setting["bilateral_sxy"],
        bilateral_srgb=setting["bilateral_srgb"],
    )
    metric = SegmentationIoU(K + 1)
    for batch in batches:
        with torch.no_grad():
            probs = torch.sigmoid(max_pool_scores(model(batch["image"])))
        candidates = select_candidates(probs, 0.5, setting["min_candidates"])
        maps = strategy(model, batch["image"], candidates)
        metric.update(crf_masks(batch["rgb"], maps, candidates, None, crf), batch["mask"])
    return float(metric.compute())


def test_tune_chooses_the_best_setting_of_a_small_grid():
    model, batches = _model(), _batches()
    segmentation = SaliencySegmentation(
        DCSM(layers=["0", "2"], scales=(1.0,)), class_names=["a", "b", "c"], min_candidates=2
    )
    tuning = tune_segmentation(
        model, segmentation, CRFSettings(iterations=3), batches, folds=0, crf_workers=0,
        progress=lambda _: None, grid_values=GRID, extend=False,
    )  # fmt: skip
    chosen = dict(tuning.strategies[0].search.best)
    names = [*GRID, "layers"]
    options = [*GRID.values(), layer_groups(["0", "2"])]
    scores = {
        values: _brute_force(model, batches, dict(zip(names, values, strict=True)))
        for values in itertools.product(*options)
    }
    best = max(scores.values())
    assert len(set(scores.values())) > 3  # the grid matters on this case
    chosen_key = tuple(chosen[n] for n in names)
    assert scores[chosen_key] == pytest.approx(best, abs=1e-6)
    # the tuner's composed maps score what the strategy itself gives, for every setting
    assert tuning.strategies[0].tuned_scores.miou() == pytest.approx(best, abs=1e-6)
    for setting, evaluation in tuning.strategies[0].scores.items():
        key = tuple(dict(setting)[n] for n in names)
        assert evaluation.miou() == pytest.approx(scores[key], abs=1e-6), setting
    assert tuning.min_candidates == chosen["min_candidates"]
    assert tuning.crf.bilateral_compat == chosen["bilateral_compat"]
    assert tuning.strategies[0].strategy.alpha == chosen["alpha"]
    # tuned.yaml's entry: the chosen options, the name with a suffix when asked
    segmentation = tuned_config(tuning, "_tuned")["model"]["init_args"]["segmentation"]
    entry = segmentation["init_args"]["saliency"][0]["init_args"]
    assert entry["alpha"] == chosen["alpha"] and entry["name"] == "dcsm_tuned"
    segmentation = tuned_config(tuning)["model"]["init_args"]["segmentation"]
    assert segmentation["init_args"]["min_candidates"] == tuning.min_candidates


def test_coordinate_search_moves_one_group_at_a_time_to_the_separable_optimum():
    grid = Grid(
        (Knob("a", (0, 1, 2), "strategy"), Knob("b", (0, 1, 2), "crf"), Knob("c", (5, 6), "crf")),
        (("a", "b"), ("c",)),
    )
    target = {"a": 2, "b": 0, "c": 6}

    def score(setting):
        return -sum((v - target[k]) ** 2 for k, v in setting)

    start = (("a", 0), ("b", 2), ("c", 5))
    result = coordinate_search(grid, start, score)
    assert dict(result.best) == target
    assert dict(exhaustive_search(grid, score).best) == target
    # a value moves only on a strict gain: a flat score keeps the start
    assert coordinate_search(grid, start, lambda s: 0.0).best == start
    # prefetch gets each group's settings before any of them is scored; same result
    asked: list = []
    seen: list = []

    def recorded(setting):
        assert setting in asked or setting == start, setting
        seen.append(setting)
        return score(setting)

    result = coordinate_search(grid, start, recorded, prefetch=lambda group: asked.extend(group))
    assert dict(result.best) == target and set(seen) <= {start, *asked}


def test_composed_maps_equal_the_strategy_maps_for_any_candidate_count():
    """LayerMaps composes each setting on the candidates' slots: the strategy's own maps,
    with 1, 2 and 3 candidates side by side in one batch (slots left empty in some images)."""
    model, batches = _model(), _batches()
    labels = torch.tensor([[1.0, 0, 0], [1, 1, 0]]), torch.tensor([[0.0, 1, 1], [1, 1, 1]])
    batches = [{**b, "labels": tags} for b, tags in zip(batches, labels, strict=True)]
    images = TuningImages.collect(model, batches)
    configured = DCSM(layers=["0", "2"], scales=(1.0, 1.5), alpha=3.0)
    source = LayerMaps(configured, model, images, ["0", "2"], (1.0, 1.5), (1,), mode="labels")
    for options in ({}, {"alpha": 1.0, "layers": ("2",)}, {"scales": (1.5,)}):
        strategy = with_options(configured, **options)
        for (maps, candidates), batch in zip(source.maps(options, 1), batches, strict=True):
            assert torch.equal(candidates, batch["labels"] > 0.5)
            expected = strategy(model, batch["image"], candidates)
            assert expected.amax() > 0.5  # not a comparison of empty maps
            torch.testing.assert_close(maps, expected, rtol=1e-5, atol=1e-6)


def test_grid_edges_are_extended_past_the_chosen_value():
    grid = Grid(
        (Knob("alpha", (1.0, 2.0, 4.0), "strategy"), Knob("iterations", (5, 10, 20), "crf")),
        (("alpha",), ("iterations",)),
    )
    assert grid.edges({"alpha": 4.0, "iterations": 10}) == ["alpha"]
    bigger, grown = extended(grid, {"alpha": 4.0, "iterations": 5})
    assert grown == ["alpha", "iterations"]
    assert bigger.knob("alpha").values == (1.0, 2.0, 4.0, 8.0)
    assert bigger.knob("iterations").values == (0, 5, 10, 20)


def test_a_budget_knob_grows_down_but_never_up():
    """The CRF's iterations (a budget: more only costs time) are not grown past the largest
    value, even at that edge; below the smallest they grow as any knob."""
    knob = default_grid(Simonyan(), 3, CRFSettings()).knob("iterations")
    assert knob.values == (5, 10, 20) and not knob.grows_up
    grid = Grid((Knob("alpha", (1.0, 2.0, 4.0), "strategy"), knob), (("alpha", "iterations"),))
    assert grid.edges({"alpha": 2.0, "iterations": 20}) == ["iterations"]  # still reported
    assert extended(grid, {"alpha": 2.0, "iterations": 20}) == (grid, [])
    bigger, grown = extended(grid, {"alpha": 4.0, "iterations": 5})
    assert grown == ["alpha", "iterations"]
    assert bigger.knob("iterations") == Knob("iterations", (0, 5, 10, 20), "crf", grows_up=False)
    # the table says which edge may hide a better value and which is a budget
    notes = edge_notes(grid, (("alpha", 4.0), ("iterations", 20)))
    assert notes[0].startswith("STILL AT THE GRID'S EDGE: alpha (")
    assert notes[1].startswith("iterations at the largest value (a budget")
    assert edge_notes(grid, (("alpha", 2.0), ("iterations", 5)))[0].endswith(
        "iterations (the best may lie beyond)"
    )


def test_folds_cover_every_image_once():
    folds = fold_indices(11, 5, seed=1)
    assert len(folds) == 5
    assert sorted(i for fold in folds for i in fold) == list(range(11))


@pytest.mark.parametrize(
    "configured, settings",
    [
        (Simonyan(alpha=8.0, scales=(1.0, 1.5)), [{}, {"alpha": 2.0}, {"scales": (1.5,)}]),
        (CaptumAttribution(method="IntegratedGradients", attribute_args={"n_steps": 4}),
         [{}, {"alpha": 10.0}]),
        (Distinct(base=GradCAM(layer="2")), [{}, {"alpha": 3.0}]),
    ],
    ids=["simonyan", "ig", "distinct_gradcam"],
)  # fmt: skip
def test_gain_maps_equal_the_strategy_maps(configured, settings):
    """GainMaps computes the maps before the tanh gain once and applies each alpha: the
    strategy's own maps, for 1-3 candidates side by side in one batch."""
    model, batches = _model(), _batches()
    labels = torch.tensor([[1.0, 0, 0], [1, 1, 0]]), torch.tensor([[0.0, 1, 1], [1, 1, 1]])
    batches = [{**b, "labels": tags} for b, tags in zip(batches, labels, strict=True)]
    images = TuningImages.collect(model, batches)
    values = {
        "alpha": [],
        "scales": [configured.scales, *(s["scales"] for s in settings if "scales" in s)],
    }
    source = map_source(configured, model, images, values, (1,), mode="labels")
    assert isinstance(source, GainMaps)
    results = []
    for options in settings:
        strategy = with_options(configured, **options)
        for (maps, candidates), batch in zip(source.maps(options, 1), batches, strict=True):
            expected = strategy(model, batch["image"], candidates)
            assert expected.amax() > 0.3  # not a comparison of empty maps
            torch.testing.assert_close(maps, expected, rtol=1e-5, atol=1e-6)
            results.append(maps)
    assert not torch.allclose(results[0], results[2])  # the settings change the maps


def test_options_round_trip_through_a_new_instance_and_a_config_entry():
    strategy = DCSM(alpha=2.0, layers=["conv3_1"], scales=(1.0,))
    assert repr(with_options(strategy)) == repr(strategy)
    assert with_options(strategy, alpha=4.0).alpha == 4.0
    entry = strategy_config(strategy)
    assert entry["class_path"] == "dcsm_lightning.saliency.dcsm.DCSM"
    assert entry["init_args"]["layers"] == ["conv3_1"]
    with pytest.raises(ValueError, match="takes no"):
        with_options(strategy, gain=1.0)
