from __future__ import annotations

import lightning.pytorch as pl
import numpy as np
import pydensecrf.densecrf as dcrf
import pytest
import torch
from pydensecrf.utils import unary_from_softmax
from torch.utils.data import DataLoader, Dataset

from dcsm_lightning.crf import CRFSettings, DenseCRF, crf_labels_from_maps, crf_masks, dense_crf
from dcsm_lightning.saliency import SaliencyStrategy
from dcsm_lightning.segmentation.callback import SaliencySegmentation
from dcsm_lightning.segmentation.labels import VOID, labels_from_maps, maps_to_probs


def _reference_crf(rgb: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """pydensecrf called by hand with the paper's settings (the README recipe)."""
    n_labels, height, width = probs.shape
    d = dcrf.DenseCRF2D(width, height, n_labels)
    d.setUnaryEnergy(np.ascontiguousarray(unary_from_softmax(probs, clip=1e-5)))
    d.addPairwiseGaussian(sxy=3, compat=1)
    d.addPairwiseBilateral(sxy=30, srgb=10, rgbim=np.ascontiguousarray(rgb), compat=1)
    q = d.inference(10)
    return np.argmax(np.array(q), axis=0).reshape(height, width)


def _smooth_image(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A blocky colour image plus noise (natural-ish statistics, fast for the lattice)."""
    blocks = rng.integers(0, 256, (height // 8 + 1, width // 8 + 1, 3))
    img = np.kron(blocks, np.ones((8, 8, 1)))[:height, :width]
    return np.clip(img + rng.integers(-10, 11, img.shape), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_dense_crf_equals_pydensecrf_by_hand(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n_labels, height, width = [(2, 40, 56), (3, 48, 48), (5, 33, 61)][seed]
    rgb = _smooth_image(rng, height, width)
    # probabilities that do NOT sum to 1 (maps as given), some exact zeros
    probs = rng.random((n_labels, height, width), dtype=np.float32)
    probs[probs < 0.05] = 0.0
    expected = _reference_crf(rgb, probs)
    assert (expected != probs.argmax(0)).any()  # the CRF did something
    out = dense_crf(rgb, probs)
    assert isinstance(out, np.ndarray) and out.dtype == np.int64 and out.shape == (height, width)
    np.testing.assert_array_equal(out, expected)
    # torch in -> torch out, same labels; float64 and non-contiguous inputs too
    out_t = dense_crf(torch.from_numpy(rgb), torch.from_numpy(probs))
    assert isinstance(out_t, torch.Tensor) and out_t.dtype == torch.int64
    np.testing.assert_array_equal(out_t.numpy(), expected)
    probs64 = probs.astype(np.float64)
    np.testing.assert_array_equal(dense_crf(rgb, probs64), _reference_crf(rgb, probs64))
    rgb_nc = np.asfortranarray(rgb)
    assert not rgb_nc.flags.c_contiguous
    np.testing.assert_array_equal(dense_crf(rgb_nc, probs), expected)


def _two_region_image(seed: int, uniform: bool = False):
    height, width = 96, 128
    edge, shift = width // 2, 6
    rng = np.random.default_rng(seed)
    rgb = np.zeros((height, width, 3), np.uint8)
    rgb[:, :edge] = (200, 60, 40)
    rgb[:, edge:] = (200, 60, 40) if uniform else (40, 80, 200)
    rgb = np.clip(rgb.astype(int) + rng.integers(-8, 9, rgb.shape), 0, 255).astype(np.uint8)
    x = np.arange(width)[None, :]
    # foreground map with its boundary 6 px right of the colour edge, noisy
    fg = np.where(x >= edge + shift, 0.6, 0.4) + rng.uniform(-0.1, 0.1, (height, width))
    probs = np.stack([1 - fg, fg]).astype(np.float32)
    truth = np.broadcast_to(x >= edge, (height, width))
    return rgb, probs, truth, edge


def _boundary_error(labels: np.ndarray, edge: int) -> float:
    """Mean over rows of |first foreground column - colour edge| in pixels."""
    return float(np.abs((labels == 1).argmax(axis=1) - edge).mean())


@pytest.mark.parametrize("backend", ["pydensecrf", "torch"])
@pytest.mark.parametrize("seed", [0, 1])
def test_crf_snaps_boundary_to_colour_edge(seed: int, backend: str) -> None:
    rgb, probs, truth, edge = _two_region_image(seed)
    before = probs.argmax(0)
    after = dense_crf(rgb, probs, backend=backend)
    assert _boundary_error(before, edge) == pytest.approx(6.0)
    assert _boundary_error(after, edge) <= 2.0
    assert (after != truth).mean() <= (before != truth).mean() / 2.5
    # control: the same probabilities on a uniform image do not move towards the edge
    rgb_flat, _, _, _ = _two_region_image(seed, uniform=True)
    assert _boundary_error(dense_crf(rgb_flat, probs, backend=backend), edge) >= 5.0


def test_single_label_and_defaults_paper() -> None:
    rgb = np.zeros((4, 5, 3), np.uint8)
    out = dense_crf(rgb, np.full((1, 4, 5), 0.3, np.float32))
    assert out.shape == (4, 5) and (out == 0).all()


@pytest.mark.parametrize(
    ("rgb", "probs", "kwargs", "match"),
    [
        (np.zeros((4, 5, 3), np.uint8), np.full((2, 4, 5), np.nan, np.float32), {}, "probs.*NaN"),
        (np.zeros((4, 5, 3), np.uint8), np.zeros((4, 5), np.float32), {}, "probs.*shape"),
        (np.zeros((4, 5, 3), np.uint8), np.zeros((2, 5, 4), np.float32), {}, "probs.*rgb"),
        (np.zeros((4, 5, 3), np.float32), np.zeros((2, 4, 5), np.float32), {}, "rgb.*uint8"),
        (np.zeros((4, 5), np.uint8), np.zeros((2, 4, 5), np.float32), {}, "rgb.*shape"),
        (np.zeros((4, 5, 3), np.uint8), np.zeros((2, 4, 5), np.int64), {}, "probs.*float"),
        (np.zeros((4, 5, 3), np.uint8), np.full((2, 4, 5), 1.5, np.float32), {}, r"\[0, 1\]"),
        (
            np.zeros((4, 5, 3), np.uint8),
            np.zeros((2, 4, 5), np.float32),
            {"iterations": -1},
            "iterations",
        ),
        (np.zeros((4, 5, 3), np.uint8), np.zeros((2, 4, 5), np.float32), {"clamp": 0.0}, "clamp"),
        ([[1, 2, 3]], np.zeros((2, 4, 5), np.float32), {}, "rgb"),
    ],
)
def test_dense_crf_bad_inputs(rgb, probs, kwargs, match) -> None:
    with pytest.raises(ValueError, match=match):
        dense_crf(rgb, probs, CRFSettings(**kwargs))


# --- crf_labels_from_maps ---------------------------------------------------------------------


def _letterboxed(seed: int, size: int = 40, h: int = 28, w: int = 40, k: int = 4):
    g = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    rgb = torch.from_numpy(_smooth_image(rng, size, size))
    maps = torch.rand(k, size, size, generator=g)
    cand = torch.tensor([True, False, True, True])[:k]
    valid = torch.zeros(size, size, dtype=torch.bool)
    valid[:h, :w] = True
    return rgb, maps, cand, valid


def test_crf_labels_from_maps_crops_padding() -> None:
    rgb, maps, cand, valid = _letterboxed(0)
    out = crf_labels_from_maps(rgb, maps, cand, valid)
    assert out.dtype == torch.int64 and out.shape == (40, 40)
    assert (out[~valid] == VOID).all()
    # equals the CRF on the valid crop, mapped to dataset ids
    probs, ids = maps_to_probs(maps[:, :28], cand)
    expected = ids[torch.from_numpy(_reference_crf(rgb[:28].numpy(), probs.numpy()))]
    assert torch.equal(out[:28], expected)
    assert set(out[valid].unique().tolist()) <= {0, 1, 3, 4}
    # the padding's content cannot influence the result
    rgb2, maps2 = rgb.clone(), maps.clone()
    rgb2[28:] = 255
    maps2[:, 28:] = 1.0
    assert torch.equal(crf_labels_from_maps(rgb2, maps2, cand, valid), out)
    # no `valid` = whole image
    full = crf_labels_from_maps(rgb, maps, cand)
    probs, ids = maps_to_probs(maps, cand)
    assert torch.equal(full, ids[torch.from_numpy(_reference_crf(rgb.numpy(), probs.numpy()))])


def test_crf_labels_from_maps_kwargs_and_errors() -> None:
    rgb, maps, cand, valid = _letterboxed(1)
    zero_iter = crf_labels_from_maps(rgb, maps, cand, valid, CRFSettings(iterations=0))
    # zero iterations = argmax of the unaries = the no-CRF labels
    assert torch.equal(zero_iter, labels_from_maps(maps, cand, valid))
    with pytest.raises(TypeError, match="sigma"):
        CRFSettings(sigma=3)
    with pytest.raises(ValueError, match="rgb"):
        crf_labels_from_maps(rgb[:20], maps, cand, valid)
    with pytest.raises(ValueError, match="valid"):
        crf_labels_from_maps(rgb, maps, cand, valid[:20])
    bad = maps.clone()
    bad[0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        crf_labels_from_maps(rgb, bad, cand, valid)
    none_valid = torch.zeros_like(valid)
    assert (crf_labels_from_maps(rgb, maps, cand, none_valid) == VOID).all()


# --- crf_masks and the DenseCRF callback in someone else's LightningModule's flow -----------


def test_crf_masks_is_the_function_per_image_with_or_without_a_pool() -> None:
    from concurrent.futures import ProcessPoolExecutor

    items = [_letterboxed(i, h=28 + i * 4) for i in range(3)]
    rgb, maps, cand, valid = (torch.stack(x) for x in zip(*items, strict=True))
    expected = torch.stack([crf_labels_from_maps(*item) for item in items])
    assert torch.equal(crf_masks(rgb, maps, cand, valid), expected)
    with ProcessPoolExecutor(2) as pool:
        assert torch.equal(crf_masks(rgb, maps, cand, valid, executor=pool), expected)
    with pytest.raises(ValueError, match="batch size"):
        crf_masks(rgb[:2], maps, cand, valid)


class _Images(Dataset):
    def __init__(self, n: int = 6, size: int = 40) -> None:
        self.items = [
            _letterboxed(i, size=size, h=28 + i % 3 * 6, w=40 - i % 2 * 10) for i in range(n)
        ]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        rgb, maps, cand, valid = self.items[i]
        mask = labels_from_maps(maps, cand, valid)
        return {"image": torch.zeros(3, 1, 1), "rgb": rgb, "valid": valid, "maps_in": maps,
                "labels": cand.float(), "mask": mask}  # fmt: skip


class _CannedMaps(SaliencyStrategy):
    """A stand-in strategy: the maps the module stashed for this batch."""

    def __init__(self) -> None:
        super().__init__(name="toy")

    def scale_maps(self, model, image, slots, size):  # not used: __call__ is replaced
        raise NotImplementedError

    def __call__(self, model, image, candidates=None):
        return model.maps_in


class _ForeignModule(pl.LightningModule):
    """Not ours: a plain module; the segmentation and DenseCRF do the rest."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(1, 1)

    def forward(self, image):
        return torch.zeros(len(image), 4)

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self.maps_in = batch["maps_in"]

    def predict_step(self, batch: dict, batch_idx: int) -> None:
        self.maps_in = batch["maps_in"]

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        return self.layer(torch.ones(1, 1)).sum()

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


class _Recorder(pl.Callback):
    """Collects the segmentation's masks and the CRF pool size of every validation batch."""

    def __init__(self) -> None:
        self.masks: list[dict] = []
        self.pool_sizes: list[int] = []

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, *_) -> None:
        seg = next(c for c in trainer.callbacks if isinstance(c, SaliencySegmentation))
        if seg.segment_in_fit or trainer.state.fn != "fit":
            out = seg.output_for(trainer, pl_module, batch, batch_idx, 0, "validate")
            self.masks.append({k: v.clone() for k, v in out.masks.items()})
        crf = next(c for c in trainer.callbacks if isinstance(c, DenseCRF))
        self.pool_sizes.append(crf._pool_workers)


def _segmentation(**kwargs) -> SaliencySegmentation:
    return SaliencySegmentation(
        [_CannedMaps()], num_classes=4, candidates="labels", log_panels=False, **kwargs
    )


def _trainer(callback: DenseCRF, recorder: _Recorder | None = None, **kwargs) -> pl.Trainer:
    seg = kwargs.pop("segmentation", None) or _segmentation()
    return pl.Trainer(
        accelerator="cpu",
        devices=1,
        callbacks=[recorder or _Recorder(), callback, seg],  # the recorder first, on purpose
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        **kwargs,
    )


def test_callback_in_trainer_workers_0_and_2_identical() -> None:
    loader = DataLoader(_Images(), batch_size=3)
    results = {}
    for workers in (0, 2):
        callback, recorder = DenseCRF(num_workers=workers, backend="pydensecrf"), _Recorder()
        trainer = _trainer(callback, recorder)
        trainer.validate(_ForeignModule(), loader, verbose=False)
        assert callback._pool is None  # shut down in teardown
        assert len(recorder.masks) == 2 and set(recorder.masks[0]) == {"toy", "toy+crf"}
        assert recorder.pool_sizes == [workers, workers]  # the pool really ran
        results[workers] = torch.cat([s["toy+crf"] for s in recorder.masks])
        seg = next(c for c in trainer.callbacks if isinstance(c, SaliencySegmentation))
        assert list(seg.results["val"]) == ["toy", "toy+crf"]
        assert seg.results["val"]["toy"]["miou"] == 1.0  # the mask is the no-CRF labels
    assert torch.equal(results[0], results[2])
    # module == function
    for i, (rgb, maps, cand, valid) in enumerate(_Images().items):
        assert torch.equal(results[0][i], crf_labels_from_maps(rgb, maps, cand, valid))


def test_callback_stages() -> None:
    loader = DataLoader(_Images(n=2), batch_size=2)
    recorder = _Recorder()
    _trainer(DenseCRF(num_workers=0, stages=["predict"]), recorder).validate(
        _ForeignModule(), loader, verbose=False
    )
    assert set(recorder.masks[0]) == {"toy"}  # stage not selected: no CRF masks


class _FailingModule(_ForeignModule):
    def validation_step(self, batch: dict, batch_idx: int) -> None:
        if batch_idx == 1:
            raise RuntimeError("boom")
        super().validation_step(batch, batch_idx)


def test_callback_pool_shut_down_on_exception() -> None:
    loader = DataLoader(_Images(n=4), batch_size=2)
    callback, recorder = DenseCRF(num_workers=2, backend="pydensecrf"), _Recorder()
    with pytest.raises(RuntimeError, match="boom"):
        _trainer(callback, recorder).validate(_FailingModule(), loader, verbose=False)
    assert recorder.pool_sizes == [2] and callback._pool is None


def test_callback_args_validated() -> None:
    with pytest.raises(ValueError, match="num_workers"):
        DenseCRF(num_workers=-1)
    with pytest.raises(ValueError, match="stages"):
        DenseCRF(stages=["fit"])
    with pytest.raises(ValueError, match="bilateral_srgb"):
        DenseCRF(CRFSettings(bilateral_srgb=0))


def test_callback_inside_fit_validation_each_epoch() -> None:
    loader = DataLoader(_Images(n=2), batch_size=2)
    callback, recorder = DenseCRF(num_workers=2, backend="pydensecrf"), _Recorder()
    trainer = _trainer(
        callback,
        recorder,
        segmentation=_segmentation(segment_in_fit=True),
        max_epochs=2,
        limit_train_batches=1,
        num_sanity_val_steps=0,
    )
    trainer.fit(_ForeignModule(), loader, loader)
    assert recorder.pool_sizes == [2, 2]  # one validation batch per epoch, pool re-forked
    assert torch.equal(recorder.masks[0]["toy+crf"], recorder.masks[1]["toy+crf"])
    assert callback._pool is None


def test_no_crf_in_fit_unless_asked() -> None:
    loader = DataLoader(_Images(n=2), batch_size=2)
    callback, recorder = DenseCRF(num_workers=2, backend="pydensecrf"), _Recorder()
    trainer = _trainer(callback, recorder, max_epochs=1, limit_train_batches=1)
    trainer.fit(_ForeignModule(), loader, loader)
    assert recorder.masks == [] and set(recorder.pool_sizes) == {0}
    trainer.validate(_ForeignModule(), loader, verbose=False)
    assert set(recorder.masks[0]) == {"toy", "toy+crf"}
