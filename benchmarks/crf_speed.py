"""CRF speed, measured side by side in one run.

(a) ``dense_crf`` vs pydensecrf called by hand on the same image (overhead of our checks and
    conversions; target ratio <= 1.05), median of interleaved repeats.
(b) the ``DenseCRF`` callback on one batch: ``num_workers=2`` vs ``0`` (target speed-up >= 1.7
    on 2 cores), interleaved repeats: steady state (pool already up, median) and the first
    batch (pool start included).
(c) worker-pool start-up for the ``fork`` / ``spawn`` start methods (why the callback forks).

Usage: ``python benchmarks/crf_speed.py [--repeats 5] [--batch 8]``. Results depend on machine
load; the load average is printed before and after.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import resource
import statistics
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import pydensecrf.densecrf as dcrf
import torch
from pydensecrf.utils import unary_from_softmax

from dcsm_lightning.crf import DenseCRF, dense_crf
from dcsm_lightning.data.adapter import SegmentationBatch


def synthetic_image(seed: int, height: int, width: int, labels: int):
    """VOC-like inputs: a smooth colour image with blobs, and soft maps of ``labels`` labels."""
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(1, 3, height // 25 + 1, width // 25 + 1, generator=g)
    img = torch.nn.functional.interpolate(low, size=(height, width), mode="bicubic")[0]
    img = (img.clamp(0, 1) * 230 + torch.randint(0, 25, (3, height, width), generator=g)).clamp(
        0, 255
    )
    rgb = img.permute(1, 2, 0).to(torch.uint8).numpy()
    low = torch.rand(1, labels, height // 50 + 1, width // 50 + 1, generator=g)
    maps = torch.nn.functional.interpolate(low, size=(height, width), mode="bilinear")[0]
    return rgb, maps.clamp(0, 1).numpy().astype(np.float32)


def raw_pydensecrf(rgb: np.ndarray, probs: np.ndarray) -> np.ndarray:
    n, h, w = probs.shape
    d = dcrf.DenseCRF2D(w, h, n)
    d.setUnaryEnergy(np.ascontiguousarray(unary_from_softmax(probs, clip=1e-5)))
    d.addPairwiseGaussian(sxy=3, compat=1)
    d.addPairwiseBilateral(sxy=30, srgb=10, rgbim=np.ascontiguousarray(rgb), compat=1)
    return np.argmax(np.array(d.inference(10)), axis=0).reshape(h, w)


def timed(fn, *args) -> tuple[float, object]:
    start = time.perf_counter()
    out = fn(*args)
    return time.perf_counter() - start, out


def bench_function(repeats: int) -> None:
    rgb, probs = synthetic_image(0, 375, 500, 4)
    ours_t, raw_t = [], []
    for _ in range(repeats):  # interleaved, so load drifts hit both
        t, a = timed(raw_pydensecrf, rgb, probs)
        raw_t.append(t)
        t, b = timed(dense_crf, rgb, probs)
        ours_t.append(t)
        assert np.array_equal(a, b), "dense_crf differs from pydensecrf"
    raw, ours = statistics.median(raw_t), statistics.median(ours_t)
    print(f"(a) one 375x500 image, 4 labels, median of {repeats}:")
    print(f"    raw pydensecrf {raw * 1e3:8.1f} ms | dense_crf {ours * 1e3:8.1f} ms")
    print(f"    ratio dense_crf / raw = {ours / raw:.3f}  (target <= 1.05)")


def make_batch(batch: int, size: int = 500):
    rgbs, valid = [], torch.zeros(batch, size, size, dtype=torch.bool)
    k = 20
    candidates = torch.zeros(batch, k, dtype=torch.bool)
    all_maps = torch.zeros(batch, k, size, size)
    for i in range(batch):
        h, w = (375, 500) if i % 2 == 0 else (500, 333)  # landscape / portrait, letterboxed
        rgb, probs = synthetic_image(i + 1, h, w, 3)
        canvas = np.full((size, size, 3), (124, 116, 104), np.uint8)  # ImageNet-mean padding
        canvas[:h, :w] = rgb
        rgbs.append(torch.from_numpy(canvas))
        classes = torch.randperm(k, generator=torch.Generator().manual_seed(i))[:3]
        candidates[i, classes] = True
        all_maps[i, classes, :h, :w] = torch.from_numpy(probs)
        valid[i, :h, :w] = True
    view = SegmentationBatch(
        image=torch.zeros(batch, 3, 1, 1),
        rgb=torch.stack(rgbs),
        ids=[str(i) for i in range(batch)],
        orig_size=torch.tensor([[size, size]] * batch),
        valid=valid,
    )
    return view, {"maps": all_maps, "candidates": candidates}


def _own_cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    return own.ru_utime + own.ru_stime


def _children_cpu_seconds() -> float:
    """CPU time of the finished (joined) child processes."""
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return kids.ru_utime + kids.ru_stime


def bench_callback(repeats: int, batch: int) -> None:
    view, step_out = make_batch(batch)
    callbacks = {workers: DenseCRF(num_workers=workers) for workers in (0, 2)}
    results: dict[int, torch.Tensor] = {}
    times: dict[int, list[float]] = {0: [], 2: []}
    own_cpu = {0: 0.0, 2: 0.0}
    kids_start = _children_cpu_seconds()
    for _ in range(repeats + 1):  # interleaved, so load drifts hit both; the first is pool start
        for workers, cb in callbacks.items():
            cpu_start = _own_cpu_seconds()
            args = (None, "predict", view, step_out["maps"], step_out["candidates"])
            t, masks = timed(cb.refine, *args)
            own_cpu[workers] += _own_cpu_seconds() - cpu_start
            times[workers].append(t)
            results[workers] = masks
    callbacks[2].close()  # joins the workers, so their CPU time is counted
    cpu = {w: own_cpu[w] / (repeats + 1) for w in (0, 2)}
    cpu[2] += (_children_cpu_seconds() - kids_start) / (repeats + 1)
    assert torch.equal(results[0], results[2]), "pool changed the masks"
    (f0, *rest0), (f2, *rest2) = times[0], times[2]
    s0, s2 = statistics.median(rest0), statistics.median(rest2)
    print(f"(b) DenseCRF callback, batch of {batch} letterboxed 500x500 images, 3 candidates:")
    print(f"    steady (median of {repeats}): workers=0 {s0:6.2f} s | workers=2 {s2:6.2f} s")
    print(f"    speed-up workers=2 vs 0 = {s0 / s2:.2f}  (target >= 1.7)")
    print(
        f"    first batch (pool start incl.): workers=0 {f0:6.2f} s | workers=2 {f2:6.2f} s "
        f"-> {f0 / f2:.2f}"
    )
    print(
        f"    CPU s per batch (this process + workers): workers=0 {cpu[0]:6.2f} | "
        f"workers=2 {cpu[2]:6.2f}  (equal = the pool adds no work; wall gap = contention)"
    )


def bench_startup() -> None:
    rgb = np.zeros((8, 8, 3), np.uint8)
    probs = np.full((2, 8, 8), 0.5, np.float32)
    line = []
    for method in ("fork", "spawn"):
        if method not in multiprocessing.get_all_start_methods():
            continue
        start = time.perf_counter()
        with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context(method)) as ex:
            list(ex.map(dense_crf, [rgb, rgb], [probs, probs]))
            line.append(f"{method} {time.perf_counter() - start:6.3f} s")
    print("(c) 2-worker pool, time to first results: " + " | ".join(line))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch", type=int, default=8)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"cores available: {len(os.sched_getaffinity(0))}, load average {os.getloadavg()}")
    bench_function(args.repeats)
    bench_callback(args.repeats, args.batch)
    bench_startup()
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
