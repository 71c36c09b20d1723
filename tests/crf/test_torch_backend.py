from __future__ import annotations

import numpy as np
import pydensecrf.densecrf as dcrf
import pytest
import torch

from dcsm_lightning.crf import CRFSettings, DenseCRF, crf_masks, dense_crf, dense_crf_batch
from dcsm_lightning.crf.settings import BACKEND_ENV, resolve_backend
from dcsm_lightning.crf.torch_backend import GaussianKernel, _features
from dcsm_lightning.segmentation.labels import label_probs


def _blocky(rng: np.random.Generator, height: int, width: int, noise: int = 10) -> np.ndarray:
    """Colour blocks of 8 px plus noise."""
    blocks = rng.integers(0, 256, (height // 8 + 1, width // 8 + 1, 3))
    img = np.kron(blocks, np.ones((8, 8, 1)))[:height, :width]
    return np.clip(img + rng.integers(-noise, noise + 1, img.shape), 0, 255).astype(np.uint8)


def _pydensecrf_filter(rgb: np.ndarray, unary: np.ndarray, sxy: float, srgb: float | None):
    """pydensecrf's normalised filter of Q0[0] - Q0[1], read off one mean-field step.

    With one pairwise term of weight 1, ``Q1 = softmax(-unary + F(Q0))`` and F linear, so
    ``F(Q0[0] - Q0[1]) = log(Q1[0] / Q1[1]) + unary[0] - unary[1]``."""
    height, width = rgb.shape[:2]
    crf = dcrf.DenseCRF2D(width, height, 2)
    crf.setUnaryEnergy(np.ascontiguousarray(unary))
    if srgb is None:
        crf.addPairwiseGaussian(sxy=sxy, compat=1)
    else:
        crf.addPairwiseBilateral(sxy=sxy, srgb=srgb, rgbim=rgb, compat=1)
    q = np.array(crf.inference(1))
    return np.log(q[0] / q[1]) + unary[0] - unary[1]


@pytest.mark.parametrize(("sxy", "srgb"), [(3.0, None), (30.0, 10.0), (5.0, 20.0)])
def test_kernels_equal_pydensecrf_filter(sxy: float, srgb: float | None) -> None:
    rng = np.random.default_rng(0)
    height, width = 30, 40
    rgb = _blocky(rng, height, width)
    unary = rng.uniform(0, 2, (2, height * width)).astype(np.float32)
    expected = _pydensecrf_filter(rgb, unary, sxy, srgb)
    q0 = torch.softmax(-torch.from_numpy(unary).T, dim=1)
    kernel = GaussianKernel(_features(torch.from_numpy(rgb), height, width, sxy, srgb), None, 1.0)
    out = kernel(q0)
    got = (out[:, 0] - out[:, 1]).numpy()
    # measured 3e-7 (float rounding); dropping the colour features or srgb=1: > 0.08
    assert np.abs(got - expected).max() < 1e-5
    assert np.abs(expected).max() > 0.05  # the filter did something


@pytest.mark.parametrize("seed", [0, 1])
def test_torch_backend_agrees_with_pydensecrf(seed: int) -> None:
    rng = np.random.default_rng(seed)
    rgb = _blocky(rng, 45, 61)
    probs = rng.random((4, 45, 61), dtype=np.float32)
    reference = dense_crf(rgb, probs, backend="pydensecrf")
    out = dense_crf(rgb, probs, backend="torch")
    assert isinstance(out, np.ndarray) and out.dtype == np.int64 and out.shape == (45, 61)
    assert (reference != probs.argmax(0)).mean() > 0.05  # the CRF changed labels
    assert (out == reference).mean() >= 0.999
    out_t = dense_crf(torch.from_numpy(rgb), torch.from_numpy(probs), backend="torch")
    assert isinstance(out_t, torch.Tensor) and torch.equal(out_t, torch.from_numpy(out))


def test_batch_equals_one_image_at_a_time() -> None:
    rng = np.random.default_rng(3)
    shapes = [(2, 30, 40), (4, 30, 40), (3, 22, 35), (1, 30, 40)]  # sizes and labels vary
    rgbs = [torch.from_numpy(_blocky(rng, h, w)) for _, h, w in shapes]
    probs = [torch.from_numpy(rng.random(shape, dtype=np.float32)) for shape in shapes]
    batch = dense_crf_batch(rgbs, probs)
    for rgb, p, labels in zip(rgbs, probs, batch, strict=True):
        assert torch.equal(labels, dense_crf_batch([rgb], [p])[0])
        assert torch.equal(labels, dense_crf(rgb, p, backend="torch"))
    assert (batch[3] == 0).all()  # one label: nothing to decide
    # passes of a pixel budget (the CPU default splits big batches): the same labels
    for a, b in zip(dense_crf_batch(rgbs, probs, max_pixels=2000), batch, strict=True):
        assert torch.equal(a, b)
    # a 4-D batch of one size works as a sequence
    same = dense_crf_batch(torch.stack(rgbs[:2]), torch.stack([probs[0][:2], probs[1][:2]]))
    assert torch.equal(same[0], batch[0])
    assert dense_crf_batch([], []) == []


def test_zero_iterations_is_argmax_and_settings_reach_torch() -> None:
    rng = np.random.default_rng(4)
    rgb = _blocky(rng, 20, 24)
    probs = rng.random((3, 20, 24), dtype=np.float32)
    out = dense_crf(rgb, probs, CRFSettings(iterations=0), backend="torch")
    np.testing.assert_array_equal(out, probs.argmax(0))
    strong = CRFSettings(bilateral_compat=10.0, gaussian_compat=10.0)
    np.testing.assert_array_equal(
        dense_crf(rgb, probs, strong, backend="torch"),
        dense_crf(rgb, probs, strong, backend="pydensecrf"),
    )


def _letterboxed_batch(seed: int, batch: int = 3, size: int = 40):
    g = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    rgb = torch.from_numpy(np.stack([_blocky(rng, size, size) for _ in range(batch)]))
    maps = torch.rand(batch, 4, size, size, generator=g)
    candidates = torch.rand(batch, 4, generator=g) > 0.4
    valid = torch.zeros(batch, size, size, dtype=torch.bool)
    for i in range(batch):
        valid[i, : size - 6 * i, : size - 4 * (i % 2)] = True
    return rgb, maps, candidates, valid


def test_crf_masks_and_callback_with_torch_backend(crf_view) -> None:
    rgb, maps, candidates, valid = _letterboxed_batch(0)
    reference = crf_masks(rgb, maps, candidates, valid, backend="pydensecrf")
    out = crf_masks(rgb, maps, candidates, valid, backend="torch")
    assert out.dtype == torch.int64 and out.shape == reference.shape
    assert torch.equal(out == 255, reference == 255)
    assert (out == reference).float().mean() >= 0.995
    # the callback: one pass on the maps' device, no worker pool even if workers are asked for
    callback = DenseCRF(num_workers=2, backend="torch")
    view = crf_view(rgb, valid)
    probs = label_probs(maps, candidates, valid)
    assert torch.equal(callback.refine(None, "validate", view, probs), out)
    assert callback._pool is None


def test_backend_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(BACKEND_ENV, raising=False)
    assert resolve_backend("auto", "cpu") == "pydensecrf"
    assert resolve_backend("auto", torch.device("cuda", 0)) == "torch"
    assert resolve_backend("pydensecrf", "cuda") == "pydensecrf"
    monkeypatch.setenv(BACKEND_ENV, "torch")
    assert resolve_backend("auto", "cpu") == "torch"
    assert resolve_backend("pydensecrf", "cpu") == "pydensecrf"
    monkeypatch.setenv(BACKEND_ENV, "gpu")
    with pytest.raises(ValueError, match=BACKEND_ENV):
        resolve_backend("auto")
    with pytest.raises(ValueError, match="backend"):
        DenseCRF(backend="cuda")
    with pytest.raises(ValueError, match="backend"):
        dense_crf(np.zeros((4, 5, 3), np.uint8), np.zeros((2, 4, 5), np.float32), backend="gpu")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_equals_cpu() -> None:
    rgb, maps, candidates, valid = _letterboxed_batch(1, batch=4, size=64)
    cpu = crf_masks(rgb, maps, candidates, valid, backend="torch")
    gpu = crf_masks(rgb.cuda(), maps.cuda(), candidates.cuda(), valid.cuda())  # auto -> torch
    assert gpu.device.type == "cuda"
    assert (gpu.cpu() == cpu).float().mean() >= 0.999
