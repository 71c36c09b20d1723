"""``DenseCRF.refine`` called from several threads, each with its own settings (as ``tune``
scores CRF variants): every call gets its own settings' masks, and the threads share one pool."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import torch

from dcsm_lightning.crf import CRFSettings, DenseCRF, crf_masks
from dcsm_lightning.segmentation.labels import label_probs


def _batch(seed: int, batch: int = 4, size: int = 32):
    """Blocky images (8 px squares of random colours), random maps of 4 classes, a valid
    rectangle per image."""
    g = torch.Generator().manual_seed(seed)
    blocks = torch.randint(0, 256, (batch, size // 8, size // 8, 3), generator=g)
    rgb = blocks.repeat_interleave(8, 1).repeat_interleave(8, 2).to(torch.uint8).contiguous()
    maps = torch.rand(batch, 4, size, size, generator=g)
    candidates = torch.rand(batch, 4, generator=g) > 0.3
    valid = torch.zeros(batch, size, size, dtype=torch.bool)
    for i in range(batch):
        valid[i, : size - 4 * i, : size - 2 * i] = True
    return rgb, maps, candidates, valid


def test_threads_refine_with_their_own_settings_in_one_shared_pool(crf_view) -> None:
    rgb, maps, candidates, valid = _batch(1)
    view = crf_view(rgb, valid)
    probs = label_probs(maps, candidates, valid)
    variants = [CRFSettings(bilateral_compat=w, iterations=n) for w in (1.0, 30.0) for n in (2, 8)]
    expected = [crf_masks(rgb, maps, candidates, valid, s, backend="pydensecrf") for s in variants]
    assert len({tuple(e.flatten().tolist()) for e in expected}) == len(variants)  # all differ
    callback = DenseCRF(num_workers=2, backend="pydensecrf")
    make_pool, pools = callback._new_pool, []

    def slow_new_pool(*args):  # widens the window in which a second thread could make one
        time.sleep(0.2)
        pools.append(make_pool(*args))
        return pools[-1]

    callback._new_pool = slow_new_pool  # type: ignore[method-assign]

    def refine(settings: CRFSettings) -> torch.Tensor:
        return callback.refine(None, "validate", view, probs, settings)

    try:
        with ThreadPoolExecutor(len(variants)) as threads:
            results = list(threads.map(refine, variants * 3))
    finally:
        callback.close()
        for pool in pools:
            pool.shutdown()
    for index, result in enumerate(results):
        assert torch.equal(result, expected[index % len(variants)]), variants[index % 4]
    assert len(pools) == 1 and callback.settings == CRFSettings()  # its own settings unchanged
