"""How exactly the torch CRF backend reproduces pydensecrf, measured.

(0) The filter: the lattice's normalised Gaussian filter against the exact one (dense
    ``exp(-|f_i - f_j|^2 / 2)``, same normalisation) on random points, and the torch kernels
    against pydensecrf's own filter (read off one mean-field step) on a small image.
(a) The built-in val split (``SyntheticDataModule``, 96 px, 200 images) with a trained
    classifier's DCSM maps (``--ckpt``), both backends through ``crf_masks``.
(b) 500 x 375 images with natural-like colour statistics: piecewise-smooth regions (one colour
    and a slow shading per region) plus pixel noise, weak maps from the blurred, shifted truth.
(c) The same layouts with uniform noise images (the lattice's worst case).

For each case: the fraction of pixels whose label agrees between the backends, and the mIoU of
each backend's masks (and of the masks without CRF) against the ground truth.

Usage: ``python benchmarks/crf_agreement.py [--ckpt CKPT] [--images 10] [--cases 0abc]``;
without ``--ckpt`` case (a) is skipped. Acceptance (issue 22): (a) agreement >= 99.5 % and
mIoU within 0.3 points; (b) agreement >= 98 %.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pydensecrf.densecrf as dcrf
import torch
import torch.nn.functional as F

from dcsm_lightning import SegmentationIoU
from dcsm_lightning.crf import dense_crf
from dcsm_lightning.crf.mean_field import crf_refine
from dcsm_lightning.crf.permutohedral import PermutohedralLattice
from dcsm_lightning.crf.torch_backend import GaussianKernel, _features
from dcsm_lightning.data.adapter import as_adapter
from dcsm_lightning.data.datamodule import SyntheticDataModule
from dcsm_lightning.models import MultiLabelFCN
from dcsm_lightning.saliency import DCSM
from dcsm_lightning.segmentation.flow import segment_batch
from dcsm_lightning.segmentation.labels import label_probs

BACKENDS = ("pydensecrf", "torch")


def filter_error() -> None:
    g = torch.Generator().manual_seed(0)
    for d, spread in ((2, 6.0), (5, 3.0)):
        f = torch.rand(600, d, generator=g, dtype=torch.float64) * spread
        v = torch.rand(600, 3, generator=g, dtype=torch.float64)
        lattice = PermutohedralLattice(f.float())
        n = lattice(torch.ones(600, 1)).rsqrt()
        out = (n * lattice(n * v.float())).double()
        k = torch.exp(-0.5 * torch.cdist(f, f) ** 2)
        ne = k.sum(1, keepdim=True).rsqrt()
        exact = ne * (k @ (ne * v))
        err = ((out - exact).norm() / exact.norm()).item()
        print(f"(0) d={d}, 600 points: lattice vs exact normalised Gaussian, relative L2 {err:.4f}")
    rng = np.random.default_rng(0)
    h, w = 30, 40
    rgb = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    unary = rng.uniform(0, 2, (2, h * w)).astype(np.float32)
    for sxy, srgb in ((3.0, None), (30.0, 10.0)):
        crf = dcrf.DenseCRF2D(w, h, 2)
        crf.setUnaryEnergy(unary)
        if srgb is None:
            crf.addPairwiseGaussian(sxy=sxy, compat=1)
        else:
            crf.addPairwiseBilateral(sxy=sxy, srgb=srgb, rgbim=rgb, compat=1)
        q = np.array(crf.inference(1))
        ref = np.log(q[0] / q[1]) + unary[0] - unary[1]
        kernel = GaussianKernel(_features(torch.from_numpy(rgb), h, w, sxy, srgb), None, 1.0)
        out = kernel(torch.softmax(-torch.from_numpy(unary).T, dim=1))
        diff = np.abs((out[:, 0] - out[:, 1]).numpy() - ref).max()
        print(
            f"    sxy={sxy:g} srgb={srgb}: torch kernel vs pydensecrf's filter, max |diff| "
            f"{diff:.2e} (values up to {np.abs(ref).max():.3f})"
        )


class Tally:
    """Agreement and mIoU of both backends (and no CRF) over a case's images."""

    def __init__(self, num_classes: int) -> None:
        self.iou = {k: SegmentationIoU(num_classes) for k in (*BACKENDS, "no crf")}
        self.same = self.pixels = 0
        self.seconds = dict.fromkeys(BACKENDS, 0.0)

    def update(self, masks: dict[str, torch.Tensor], truth: torch.Tensor) -> None:
        for key, mask in masks.items():
            self.iou[key].update(mask.cpu(), truth.cpu())
        counted = masks["pydensecrf"] != 255
        self.same += int((masks["pydensecrf"] == masks["torch"])[counted].sum())
        self.pixels += int(counted.sum())

    def report(self, title: str) -> None:
        miou = {k: 100 * float(m.compute()) for k, m in self.iou.items()}
        print(
            f"{title}: agreement {100 * self.same / self.pixels:.3f} % "
            f"({self.pixels - self.same} of {self.pixels} px differ) | "
            f"mIoU pydensecrf {miou['pydensecrf']:.2f}, torch {miou['torch']:.2f} "
            f"(diff {miou['torch'] - miou['pydensecrf']:+.2f}), no CRF {miou['no crf']:.2f} | "
            f"s: pydensecrf {self.seconds['pydensecrf']:.1f}, torch {self.seconds['torch']:.1f}"
        )


def builtin_val(ckpt: str) -> None:
    model = MultiLabelFCN.load_from_checkpoint(ckpt, map_location="cpu").eval()
    data = SyntheticDataModule(num_val=200, size=96, seed=0, batch_size=16)
    data.setup("validate")
    adapter = as_adapter(None)
    tally = Tally(len(data.class_names) + 1)
    for index, batch in enumerate(data.val_dataloader()):
        view = adapter(batch, index)
        out = segment_batch(model, view, [DCSM()], stage="validate")  # maps, no refiner
        eq7 = label_probs(out.maps["dcsm"], out.candidates, view.valid)
        masks = {"no crf": eq7.labels(view.valid)}
        for backend in BACKENDS:
            start = time.perf_counter()
            args = (view.rgb, eq7, view.extent, view.valid)
            masks[backend] = crf_refine(*args, backend=backend)
            tally.seconds[backend] += time.perf_counter() - start
        tally.update(masks, view.mask)
    tally.report("(a) built-in val, 200 images at 96 px, DCSM maps")


def _smooth(g: torch.Generator, channels: int, h: int, w: int, cell: int) -> torch.Tensor:
    low = torch.rand(1, channels, h // cell + 2, w // cell + 2, generator=g)
    return F.interpolate(low, size=(h, w), mode="bicubic", align_corners=False)[0]


def scene(seed: int, noise: bool, h: int = 375, w: int = 500, labels: int = 4):
    """(rgb uint8 (h, w, 3), probs float32 (labels, h, w), truth int64 (h, w))."""
    g = torch.Generator().manual_seed(seed)
    truth = _smooth(g, labels, h, w, 60).argmax(0)
    if noise:
        rgb = torch.randint(0, 256, (h, w, 3), generator=g, dtype=torch.uint8)
    else:
        colours = torch.rand(labels, 3, generator=g) * 200
        shading = (_smooth(g, 3, h, w, 40) - 0.5) * 60
        grain = torch.randint(-12, 13, (3, h, w), generator=g)
        img = colours[truth].permute(2, 0, 1) + shading + grain
        rgb = img.clamp(0, 255).permute(1, 2, 0).to(torch.uint8)
    one_hot = F.one_hot(truth, labels).permute(2, 0, 1).float()[None]
    shifted = torch.roll(one_hot, shifts=(6, -5), dims=(2, 3))  # maps miss the edges
    blurred = F.avg_pool2d(shifted, 25, stride=1, padding=12, count_include_pad=False)[0]
    probs = (0.7 * blurred + 0.3 * _smooth(g, labels, h, w, 30)).clamp(0, 1)
    return rgb, probs, truth


def natural_and_noise(images: int, natural: bool = True, noisy: bool = True) -> None:
    cases = [(False, "(b) 500 x 375 natural-like")] * natural + [
        (True, "(c) 500 x 375 noise")
    ] * noisy
    for noise, title in cases:
        tally = Tally(4)
        for i in range(images):
            rgb, probs, truth = scene(i, noise)
            masks = {"no crf": probs.argmax(0)}
            for backend in BACKENDS:
                start = time.perf_counter()
                masks[backend] = torch.as_tensor(dense_crf(rgb, probs, backend=backend))
                tally.seconds[backend] += time.perf_counter() - start
            tally.update({k: v[None] for k, v in masks.items()}, truth[None])
        tally.report(f"{title}, {images} images, 4 labels")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", default=None, help="classifier for case (a)")
    parser.add_argument("--images", type=int, default=10, help="images in (b) and (c)")
    parser.add_argument("--cases", default="0abc", help="which cases to run, e.g. 'a'")
    args = parser.parse_args()
    print(f"torch threads {torch.get_num_threads()}")
    if "0" in args.cases:
        filter_error()
    if "a" in args.cases:
        if args.ckpt:
            builtin_val(args.ckpt)
        else:
            print("(a) skipped: no --ckpt")
    natural_and_noise(args.images, "b" in args.cases, "c" in args.cases)


if __name__ == "__main__":
    main()
