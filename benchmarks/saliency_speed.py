"""Speed of DCSM maps: a loop of Captum calls (one per class and scale) vs the ``dcsm`` strategy.

(a) the reference: Captum ``LayerGradientXActivation(multiply_by_inputs=False)`` at the input of
    the layers, called once per candidate class and scale (a forward and a backward each),
    turned into DCSM maps by the library's Eq. 4-5 functions;
(b) ``DCSM(backprop="bp")``: one forward per scale, then the N class seeds back through the
    shared graph, one by one (``batched_backward=False``) or as one batched backward
    (``True``).

Both must give the same maps (max abs diff <= 1e-5). Plain back-propagation is used so that
Captum is an exact reference. Models have random weights (``create_backbone``). The last
line printed is the speed ratio (a) / (b) on VGG-16 at 500 x 500 with the 9 layers of blocks
3-5 and N = 3, with (b) as the strategy picks it by default for the device.

Peak memory: on CUDA ``torch.cuda.max_memory_allocated`` above what was allocated before the
run; on the CPU the peak resident set size (``VmHWM``, reset through ``/proc/self/clear_refs``)
above the RSS before the run, or the ``ru_maxrss`` increase where that is not available.

Usage::

    python benchmarks/saliency_speed.py [--device auto|cpu|cuda] [--quick] [--repeats R]
        [--threads T]

With ``--repeats R`` the three runs are interleaved R times and the fastest of each is kept
(the CPUs may be shared); peak memory is the largest seen.
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
    average_maps,
    max_abs_over_channels,
    resolve_layers,
    subtract_other_candidates,
    tanh_normalize,
    upsample_maps,
)
from dcsm_lightning.saliency.base import rescale

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


class SummedScores(nn.Module):
    """Score map B x K x h x w -> B x K (sum over positions: the paper's backward seed)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x).sum(dim=(2, 3))


def captum_dcsm(
    model: nn.Module, image: torch.Tensor, candidates: torch.Tensor, layers
) -> torch.Tensor:
    """(a): one Captum call per class and scale, then Eq. 4-5 (B = 1)."""
    from captum.attr import LayerGradientXActivation

    modules = [m for _, m in resolve_layers(model, layers)]
    attr = LayerGradientXActivation(SummedScores(model), modules, multiply_by_inputs=False)
    size = tuple(image.shape[-2:])
    classes = candidates[0].nonzero().flatten().tolist()
    valid = torch.ones(1, len(classes), dtype=torch.bool, device=image.device)
    terms = []
    for scale in SCALES:
        x = rescale(image, scale)
        per_class = []
        for c in classes:
            grads = attr.attribute(x, target=c, attribute_to_layer_input=True)
            per_class.append([upsample_maps(max_abs_over_channels(g), size) for g in grads])
        for i in range(len(modules)):
            maps = torch.stack([pc[i] for pc in per_class], dim=1)  # 1 x N x H x W
            terms.append(tanh_normalize(subtract_other_candidates(maps, valid), ALPHA))
    out = image.new_zeros(1, candidates.shape[1], *size)
    out[:, classes] = average_maps(terms).detach()
    return out


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
    model = create_backbone(cfg.backbone, NUM_CLASSES).to(device).eval()
    gen = torch.Generator().manual_seed(0)
    image = torch.randn(1, 3, cfg.size, cfg.size, generator=gen).to(device)
    candidates = torch.zeros(1, NUM_CLASSES, dtype=torch.bool)
    candidates[0, torch.randperm(NUM_CLASSES, generator=gen)[: cfg.num_candidates]] = True
    candidates = candidates.to(device)
    with torch.no_grad():
        model(image)  # warm-up
    loop = DCSM(
        layers=cfg.layers, backprop="bp", scales=SCALES, alpha=ALPHA, batched_backward=False
    )
    batched = DCSM(
        layers=cfg.layers, backprop="bp", scales=SCALES, alpha=ALPHA, batched_backward=True
    )
    runs = {
        "loop": lambda: loop(model, image, candidates),
        "batched": lambda: batched(model, image, candidates),
        "ref": lambda: captum_dcsm(model, image, candidates, cfg.layers),
    }
    maps: dict[str, torch.Tensor] = {}
    times: dict[str, float] = {}
    mems: dict[str, float] = {}
    for _ in range(repeats):  # interleaved; the fastest run of each counts (shared, noisy CPUs)
        for key, fn in runs.items():
            maps[key], seconds, mem = measure(fn, device)
            times[key] = min(times.get(key, float("inf")), seconds)
            mems[key] = max(mems.get(key, 0.0), mem)
    ref, maps_loop, maps_batched = maps["ref"], maps["loop"], maps["batched"]
    t_ref, t_loop, t_batched = times["ref"], times["loop"], times["batched"]
    mem_ref, mem_loop, mem_batched = mems["ref"], mems["loop"], mems["batched"]
    diff = max(float((ref - maps_loop).abs().max()), float((ref - maps_batched).abs().max()))
    auto_batched = DCSM().use_batched_backward(device)
    t_auto = t_batched if auto_batched else t_loop
    print(
        f"{cfg.label()}: (a) captum loop {t_ref:.2f} s, peak +{mem_ref:.0f} MiB | "
        f"(b) dcsm one-by-one {t_loop:.2f} s, peak +{mem_loop:.0f} MiB | "
        f"(b) dcsm batched {t_batched:.2f} s, peak +{mem_batched:.0f} MiB | "
        f"max|a-b| {diff:.1e} | ratio a/b: one-by-one {t_ref / t_loop:.2f}, "
        f"batched {t_ref / t_batched:.2f}, default ({'batched' if auto_batched else 'one-by-one'}) "
        f"{t_ref / t_auto:.2f}",
        flush=True,
    )
    if diff > 1e-5:
        raise SystemExit(f"maps differ: max abs diff {diff:.2e} > 1e-5")
    return {"ratio": t_ref / t_auto}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--quick", action="store_true", help="only the small backbone")
    parser.add_argument(
        "--repeats", type=int, default=1, help="interleaved runs; the fastest counts"
    )
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
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
    if not args.quick:
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
    last = configs[-1]
    print(f"speed ratio ({last.label()}, captum loop / dcsm): {results[-1]['ratio']:.2f}")


if __name__ == "__main__":
    main()
