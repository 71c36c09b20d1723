"""CRF speed, measured side by side in one run.

(a) ``dense_crf`` vs pydensecrf called by hand on the same image (overhead of our checks and
    conversions; target ratio <= 1.05), median of interleaved repeats.
(b) the ``DenseCRF`` callback on one batch: ``num_workers=2`` vs ``0`` (target speed-up >= 1.7
    on 2 cores), interleaved repeats: steady state (pool already up, median) and the first
    batch (pool start included).
(c) worker-pool start-up for the ``fork`` / ``spawn`` start methods (why the callback forks).
(d) the two backends side by side: ``pydensecrf`` (one image after the other, in process) and
    ``torch`` (``dense_crf_batch``: the whole batch in one pass) at 96 x 96 and 375 x 500, batches
    of 1 and 16: seconds per image (median of interleaved repeats) and peak memory per image,
    measured in a fresh process above its resident memory before the call (``VmHWM`` after
    resetting it; CUDA: the allocator's peak). On the CPU, and on CUDA when a GPU is available
    (torch only; pydensecrf has no GPU path).

Usage: ``python benchmarks/crf_speed.py [--repeats 5] [--batch 8] [--parts abcd]``. Results
depend on machine load; the load average is printed before and after. ``OMP_NUM_THREADS``
(torch's threads; pydensecrf uses one) is printed too.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import resource
import statistics
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import pydensecrf.densecrf as dcrf
import torch
from pydensecrf.utils import unary_from_softmax

from dcsm_lightning.crf import DenseCRF, dense_crf, dense_crf_batch
from dcsm_lightning.crf.torch_backend import CPU_PASS_PIXELS
from dcsm_lightning.data.adapter import SegmentationBatch
from dcsm_lightning.segmentation.labels import label_probs


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
    callbacks = {w: DenseCRF(num_workers=w, backend="pydensecrf") for w in (0, 2)}
    eq7 = label_probs(step_out["maps"], step_out["candidates"], view.valid)
    results: dict[int, torch.Tensor] = {}
    times: dict[int, list[float]] = {0: [], 2: []}
    own_cpu = {0: 0.0, 2: 0.0}
    kids_start = _children_cpu_seconds()
    for _ in range(repeats + 1):  # interleaved, so load drifts hit both; the first is pool start
        for workers, cb in callbacks.items():
            cpu_start = _own_cpu_seconds()
            t, masks = timed(cb.refine, None, "predict", view, eq7)
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


def _proc_kib(field: str) -> int:
    with open("/proc/self/status", encoding="ascii") as status:
        return next(int(line.split()[1]) for line in status if line.startswith(field + ":"))


def peak_mib(fn, *args) -> tuple[float, object]:
    """Peak resident memory (MiB) above the current one while ``fn`` runs (Linux ``/proc``)."""
    with open("/proc/self/clear_refs", "w", encoding="ascii") as refs:
        refs.write("5")  # reset VmHWM to the current RSS
    before = _proc_kib("VmRSS")
    out = fn(*args)
    return (_proc_kib("VmHWM") - before) / 1024, out


def memory_child(backend: str, h: int, w: int, batch: int, device: str) -> float:
    """Peak memory (MiB) of one call in a fresh process (``--memory``), above its start."""
    cmd = [sys.executable, __file__, "--memory", backend, str(h), str(w), str(batch), device]
    done = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return float(done.stdout.strip().splitlines()[-1])


def measure_memory(backend: str, h: int, w: int, batch: int, device: str) -> float:
    """The ``--memory`` child: MiB above the process's memory before the call (CUDA: the
    allocator's peak above its allocation before)."""
    images, rgbs, probs = _inputs(h, w, batch, device)
    tiny = synthetic_image(99, 8, 8, 2)  # loads the libraries' lazy parts first
    if backend == "pydensecrf":
        _one_by_one([tiny])
        return peak_mib(_one_by_one, images)[0]
    _batched([torch.from_numpy(tiny[0]).to(device)], [torch.from_numpy(tiny[1]).to(device)])
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        _batched(rgbs, probs)
        return (torch.cuda.max_memory_allocated() - base) / 2**20
    return peak_mib(_batched, rgbs, probs)[0]


def _inputs(h: int, w: int, batch: int, device: str) -> tuple[list, list, list]:
    """``batch`` natural-like images: numpy (rgb, probs) pairs, and the tensors on ``device``."""
    images = [synthetic_image(i, h, w, 4) for i in range(batch)]
    rgbs = [torch.from_numpy(rgb).to(device) for rgb, _ in images]
    return images, rgbs, [torch.from_numpy(p).to(device) for _, p in images]


def _one_by_one(images: list) -> list:
    return [dense_crf(rgb, p, backend="pydensecrf") for rgb, p in images]


def _batched(rgbs: list, probs: list) -> list:
    out = dense_crf_batch(rgbs, probs)
    if out[0].is_cuda:
        torch.cuda.synchronize()
    return out


def bench_backends(repeats: int, device: str) -> None:
    print(f"(d) backends, 4 labels, 10 iterations, torch on {device}: seconds per image; peak")
    print("    MiB of the call (pydensecrf holds one image at a time; torch one pass of n images,")
    print("    CPU passes <= CPU_PASS_PIXELS, and peak / n = per image)")
    print("    size     batch | pydensecrf s  peak | torch s    peak  n  /image | torch / pyd.")
    for (h, w), batch in (((96, 96), 1), ((96, 96), 16), ((375, 500), 1), ((375, 500), 16)):
        images, rgbs, probs = _inputs(h, w, batch, device)
        calls = {"pydensecrf": (_one_by_one, images), "torch": (_batched, rgbs, probs)}
        runs = max(1, repeats if h * w * batch < 10**6 else 1)
        times: dict[str, list[float]] = {"pydensecrf": [], "torch": []}
        memory = {name: memory_child(name, h, w, batch, device) for name in calls}
        for _ in range(runs):
            for name, (fn, *args) in calls.items():
                t, result = timed(fn, *args)
                times[name].append(t / batch)
                if name == "pydensecrf":
                    reference = result
            agree = np.mean(
                [np.mean(a == b.cpu().numpy()) for a, b in zip(reference, result, strict=True)]
            )
        p, t = statistics.median(times["pydensecrf"]), statistics.median(times["torch"])
        per_pass = batch if device != "cpu" else max(1, min(batch, CPU_PASS_PIXELS // (h * w)))
        print(
            f"    {h:3d}x{w:<3d} {batch:6d} | {p:8.4f} {memory['pydensecrf']:7.1f} | "
            f"{t:7.4f} {memory['torch']:7.1f} {per_pass:2d} {memory['torch'] / per_pass:6.1f} | "
            f"{t / p:5.2f}   "
            f"(agreement {agree:.4f}, {runs} runs)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--parts", default="abcd", help="which parts to run, e.g. 'd'")
    parser.add_argument("--memory", nargs=5, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    threads = int(os.environ.get("OMP_NUM_THREADS", "1"))
    torch.set_num_threads(threads)
    if args.memory:  # a child process of memory_child
        backend, h, w, batch, device = args.memory
        print(measure_memory(backend, int(h), int(w), int(batch), device))
        return
    print(
        f"cores available: {len(os.sched_getaffinity(0))}, torch threads {threads} "
        f"(OMP_NUM_THREADS), load average {os.getloadavg()}"
    )
    if "a" in args.parts:
        bench_function(args.repeats)
    if "b" in args.parts:
        bench_callback(args.repeats, args.batch)
    if "c" in args.parts:
        bench_startup()
    if "d" in args.parts:
        bench_backends(args.repeats, "cpu")
        if torch.cuda.is_available():
            bench_backends(args.repeats, "cuda")
        else:
            print("    CUDA: not measured, no GPU available")
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
