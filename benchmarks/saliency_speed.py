"""Speed of DCSM maps: the default ``"shared"`` engine against its bound, and ``"captum"``.

Columns, all ``DCSM(backprop="bp")`` maps of one image (plain back-propagation, so that Captum
is an exact reference):

- ``bound``: what any implementation of Eq. 3 must do per scale: one bare forward (hooks that
  keep the layers' inputs) plus N ``torch.autograd.grad`` calls, nothing else (no checks, no
  maps);
- ``shared 1-by-1`` / ``shared batched``: ``engine="shared"``, the N seeds back through one
  forward one by one (``batched_backward=False``) or as one batched backward (``True``);
- ``captum``: ``engine="captum"``: Captum's ``LayerGradientXActivation`` per candidate slot
  (a forward and a backward each), the same Eq. 4-5 code after it.

Printed per configuration: seconds and peak memory of each column, the max abs difference of
the captum maps from the shared ones (must be <= 1e-5), ``default / bound`` (the engine the
strategy picks for the device; the target is <= 1.10) and ``captum / default``. The last lines
repeat them for VGG-16 at 500 x 500 with the 9 layers of blocks 3-5 and N = 3. Models have
random weights (``create_backbone``).

Peak memory: on CUDA ``torch.cuda.max_memory_allocated`` above what was allocated before the
run; on the CPU the peak resident set size (``VmHWM``, reset through ``/proc/self/clear_refs``)
above the RSS before the run, or the ``ru_maxrss`` increase where that is not available.

Usage::

    python benchmarks/saliency_speed.py [--device auto|cpu|cuda] [--quick] [--repeats R]
        [--threads T] [--main-only]

With ``--repeats R`` the runs are interleaved R times and the fastest of each is kept (the CPUs
may be shared); peak memory is the largest seen. ``--main-only`` runs only the VGG-16 500 x 500,
9 layers, N = 3 configuration.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from dcsm_lightning.models import create_backbone
from dcsm_lightning.saliency import (
    BLOCKS_3_TO_5,
    DCSM,
    resolve_layers,
)
from dcsm_lightning.saliency.inputs import rescale

SCALES = (0.8, 1.0, 1.2)
ALPHA = 3.0
NUM_CLASSES = 20
FIG3_LAYERS = ("conv3_2", "conv4_2", "conv5_2")


@dataclass(frozen=True)
class Config:
    backbone: str
    size: int
    layers: tuple[str, ...]
    num_candidates: int

    def label(self) -> str:
        return (
            f"{self.backbone} {self.size}x{self.size} layers={len(self.layers)} "
            f"N={self.num_candidates} scales={len(SCALES)}"
        )


def bound(model: nn.Module, image: torch.Tensor, candidates: torch.Tensor, layers) -> torch.Tensor:
    """The bound: per scale one bare forward plus N ``torch.autograd.grad`` calls (B = 1)."""
    modules = [m for _, m in resolve_layers(model, layers)]
    classes = candidates[0].nonzero().flatten().tolist()
    captured: list[torch.Tensor] = []

    def keep(module: nn.Module, args: tuple) -> tuple:
        x = args[0] if args[0].requires_grad else args[0].detach().requires_grad_(True)
        captured.append(x)
        return (x, *args[1:])

    handles = [m.register_forward_pre_hook(keep) for m in modules]
    try:
        with torch.enable_grad():
            for scale in SCALES:
                captured.clear()
                scores = model(rescale(image, scale)).sum(dim=(2, 3))  # B x K, the "sum" seed
                for i, c in enumerate(classes):
                    torch.autograd.grad(
                        scores[:, c].sum(), captured, retain_graph=i < len(classes) - 1
                    )
    finally:
        for handle in handles:
            handle.remove()
    return scores.detach()


def _status_kib(key: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            match = re.search(rf"{key}:\s+(\d+)", f.read())
        return int(match.group(1)) if match else None
    except OSError:
        return None


def measure(
    fn: Callable[[], torch.Tensor], device: torch.device
) -> tuple[torch.Tensor, float, float]:
    """Run ``fn`` once: (result, seconds, peak extra memory in MiB)."""
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        start = time.perf_counter()
        out = fn()
        torch.cuda.synchronize()
        seconds = time.perf_counter() - start
        return out, seconds, (torch.cuda.max_memory_allocated() - base) / 2**20
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset the peak RSS (VmHWM)
        base, use_hwm = _status_kib("VmRSS"), True
    except OSError:
        base, use_hwm = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, False
    start = time.perf_counter()
    out = fn()
    seconds = time.perf_counter() - start
    peak = _status_kib("VmHWM") if use_hwm else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return out, seconds, (peak - base) / 1024


def run_config(cfg: Config, device: torch.device, repeats: int) -> dict[str, float]:
    torch.manual_seed(0)
    model = create_backbone(cfg.backbone, NUM_CLASSES).to(device).eval().requires_grad_(False)
    gen = torch.Generator().manual_seed(0)
    image = torch.randn(1, 3, cfg.size, cfg.size, generator=gen).to(device)
    candidates = torch.zeros(1, NUM_CLASSES, dtype=torch.bool)
    candidates[0, torch.randperm(NUM_CLASSES, generator=gen)[: cfg.num_candidates]] = True
    candidates = candidates.to(device)
    with torch.no_grad():
        model(image)  # warm-up

    def dcsm(**options) -> DCSM:
        return DCSM(layers=cfg.layers, backprop="bp", scales=SCALES, alpha=ALPHA, **options)

    strategies = {
        "shared 1-by-1": dcsm(batched_backward=False),
        "shared batched": dcsm(batched_backward=True),
        "captum": dcsm(engine="captum"),
    }
    runs: dict[str, Callable[[], torch.Tensor]] = {
        "bound": lambda: bound(model, image, candidates, cfg.layers)
    }
    runs.update({k: (lambda s=s: s(model, image, candidates)) for k, s in strategies.items()})
    maps: dict[str, torch.Tensor] = {}
    times: dict[str, float] = {}
    mems: dict[str, float] = {}
    for _ in range(repeats):  # interleaved; the fastest run of each counts (shared, noisy CPUs)
        for key, fn in runs.items():
            maps[key], seconds, mem = measure(fn, device)
            times[key] = min(times.get(key, float("inf")), seconds)
            mems[key] = max(mems.get(key, 0.0), mem)
    diff = max(
        float((maps["captum"] - maps[k]).abs().max()) for k in ("shared 1-by-1", "shared batched")
    )
    default = "shared batched" if DCSM().use_batched_backward(device) else "shared 1-by-1"
    columns = " | ".join(f"{k} {times[k]:.2f} s, peak +{mems[k]:.0f} MiB" for k in runs)
    ratios = {
        "default/bound": times[default] / times["bound"],
        "captum/default": times["captum"] / times[default],
        "max|captum-shared|": diff,
    }
    print(
        f"{cfg.label()}: {columns} | max|captum-shared| {diff:.1e} | default ({default}) / "
        f"bound {ratios['default/bound']:.2f} | captum / default {ratios['captum/default']:.2f}",
        flush=True,
    )
    if diff > 1e-5:
        raise SystemExit(f"maps differ: max abs diff {diff:.2e} > 1e-5")
    return ratios


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--quick", action="store_true", help="only the small backbone")
    parser.add_argument(
        "--repeats", type=int, default=1, help="interleaved runs; the fastest counts"
    )
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument(
        "--main-only", action="store_true", help="only VGG-16 500 px, 9 layers, N = 3"
    )
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    name = args.device
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    warnings.filterwarnings("ignore", module="captum")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"device={device} torch={torch.__version__} threads={torch.get_num_threads()} "
        f"load(1 min)={load:.2f} repeats={args.repeats}"
    )
    configs = [Config("vgg_small", 96, FIG3_LAYERS, 3)]
    if args.main_only:
        configs = [Config("vgg16", 500, BLOCKS_3_TO_5, 3)]
    elif not args.quick:
        configs += [
            Config("vgg16", 500, FIG3_LAYERS, 3),
            Config("vgg16", 500, BLOCKS_3_TO_5, 6),
            Config("vgg16", 500, BLOCKS_3_TO_5, 3),
        ]
    # The small model's runs take well under a second: repeat them more to beat the noise.
    results = [
        run_config(cfg, device, args.repeats * (5 if cfg.backbone == "vgg_small" else 1))
        for cfg in configs
    ]
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"load(1 min) at the end={load:.2f}")
    last, ratios = configs[-1], results[-1]
    print(f"{last.label()}:")
    print(f"  default engine / bound: {ratios['default/bound']:.2f} (target <= 1.10)")
    print(
        f"  captum / shared (default): {ratios['captum/default']:.2f}, "
        f"max map difference {ratios['max|captum-shared|']:.1e}"
    )


if __name__ == "__main__":
    main()
