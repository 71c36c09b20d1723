"""segment_batch: one flow, two doors (the callback, a hand loop); methods as typed pairs."""

from __future__ import annotations

import pickle

import lightning.pytorch as pl
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader

import dcsm_lightning.segmentation.labels as labels_module
from dcsm_lightning.crf import CRFSettings, DenseCRF, crf_masks
from dcsm_lightning.data.adapter import as_adapter
from dcsm_lightning.saliency import DCSM, Simonyan, create_saliency
from dcsm_lightning.segmentation.callback import SaliencySegmentation
from dcsm_lightning.segmentation.flow import CandidateRule, segment_batch
from dcsm_lightning.segmentation.labels import labels_from_maps
from dcsm_lightning.segmentation.methods import Method
from dcsm_lightning.segmentation.network import NetworkSegmentation

K = 4
S = 20


class Tiny(pl.LightningModule):
    """A classifier with a score map B x K x h x w and enough texture for non-flat maps."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU())
        self.head = nn.Conv2d(8, K, 1)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(image))

    def validation_step(self, batch, batch_idx) -> None:
        pass


def _batch() -> dict:
    g = torch.Generator().manual_seed(3)
    valid = torch.zeros(3, S, S, dtype=torch.bool)
    for i, (h, w) in enumerate([(S, S), (12, S), (S, 9)]):
        valid[i, :h, :w] = True
    return {
        "image": torch.randn(3, 3, S, S, generator=g),
        "mask": torch.randint(0, K + 1, (3, S, S), generator=g),
        "labels": (torch.rand(3, K, generator=g) > 0.4).float(),
        "valid": valid,
        "id": ["a", "b", "c"],
    }


def test_method_is_a_typed_pair_that_reads_as_its_name() -> None:
    crf = Method("dcsm", "crf")
    assert crf == "dcsm+crf" and hash(crf) == hash("dcsm+crf")
    assert (crf.strategy, crf.step) == ("dcsm", "crf")
    assert {crf: 1}["dcsm+crf"] == 1
    assert Method("dcsm").step is None and Method("dcsm").refined("crf5") == "dcsm+crf5"
    again = pickle.loads(pickle.dumps(crf))
    assert (again.strategy, again.step) == ("dcsm", "crf")
    assert Method.parse("dcsm+crf") == crf and Method.parse("dcsm+crf").step == "crf"
    assert Method.parse("segnet").step is None


def test_names_with_the_separator_are_refused_when_built() -> None:
    for build in (
        lambda: DCSM(name="dcsm+x"),
        lambda: create_saliency("simonyan", name="a/b"),
        lambda: DenseCRF(name="crf+5"),
        lambda: NetworkSegmentation(name="seg+net"),
        lambda: Method("dcsm", ""),
    ):
        with pytest.raises(ValueError, match="without '\\+' or '/'"):
            build()


def test_callback_and_function_give_the_same_output_and_named_crfs_run_side_by_side() -> None:
    model = Tiny().eval()
    strategies = [Simonyan(), DCSM(layers=["features.1"], name="dcsm_f1")]
    crfs = [DenseCRF(num_workers=0), DenseCRF(CRFSettings(iterations=0), 0, name="crf0")]
    view = as_adapter(None)(_batch())
    rule = CandidateRule("labels")
    out = segment_batch(model, view, strategies, crfs, candidates=rule, stage="validate")
    expected = [Method(s, step) for s in ("simonyan", "dcsm_f1") for step in (None, "crf", "crf0")]
    assert list(out.masks) == expected
    for strategy in ("simonyan", "dcsm_f1"):
        maps = out.maps[strategy]
        assert maps.amax() > 0.5  # not a comparison on empty maps
        plain = labels_from_maps(maps, view.labels > 0.5, view.valid)
        torch.testing.assert_close(out.masks[strategy], plain, rtol=0, atol=0)
        full = crf_masks(view.rgb, maps, view.labels > 0.5, view.valid, CRFSettings())
        torch.testing.assert_close(out.masks[f"{strategy}+crf"], full, rtol=0, atol=0)
        # 0 mean-field iterations: the argmax of the unaries = Eq. 7's plain labels
        torch.testing.assert_close(out.masks[f"{strategy}+crf0"], plain, rtol=0, atol=0)
        assert not torch.equal(out.masks[f"{strategy}+crf"], plain)  # the CRF did change some

    # the callback's door: the same flow, the refiners taken from the trainer by their names
    segmentation = SaliencySegmentation(strategies, num_classes=K, candidates="labels")
    trainer = pl.Trainer(accelerator="cpu", logger=False, callbacks=[segmentation, *crfs])
    trainer.validate(model, DataLoader([_batch()], batch_size=None), verbose=False)
    assert segmentation.methods == expected
    got = segmentation.last_output
    for method in expected:
        torch.testing.assert_close(got.masks[method], out.masks[method], rtol=0, atol=0)
    assert set(segmentation.results["val"]) == set(expected)


def test_refiners_need_distinct_names() -> None:
    segmentation = SaliencySegmentation("simonyan", num_classes=K, candidates="labels")
    trainer = pl.Trainer(
        accelerator="cpu",
        logger=False,
        callbacks=[segmentation, DenseCRF(num_workers=0), DenseCRF(num_workers=0)],
    )
    with pytest.raises(ValueError, match="distinct names"):
        trainer.validate(Tiny(), DataLoader([_batch()], batch_size=None), verbose=False)


def test_maps_are_checked_and_eq7_computed_once_per_strategy(monkeypatch) -> None:
    calls = {"check": 0, "eq7": 0}
    check, background = labels_module._check_maps, labels_module._background

    def counting_check(*args, **kwargs):
        calls["check"] += 1
        return check(*args, **kwargs)

    def counting_background(*args, **kwargs):
        calls["eq7"] += 1
        return background(*args, **kwargs)

    monkeypatch.setattr(labels_module, "_check_maps", counting_check)
    monkeypatch.setattr(labels_module, "_background", counting_background)
    view = as_adapter(None)(_batch())
    crfs = [DenseCRF(num_workers=0), DenseCRF(CRFSettings(iterations=1), 0, name="crf1")]
    segment_batch(Tiny().eval(), view, [Simonyan(), DCSM(layers=["features.1"])], crfs)
    assert calls == {"check": 2, "eq7": 2}  # two strategies, whatever the refiners
