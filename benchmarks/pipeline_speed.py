"""End-to-end speed, image -> mask files, split by stage, measured side by side in one run.

Stages, per image, as the library runs them for ``predict`` (each timed on whole batches):

1. ``classify``: the forward at scale 1.0 and the candidates (``SaliencyMaps.probs``,
   ``select_candidates``; the top N = 3 classes, so models with random weights do the same
   work as trained ones);
2. ``maps``: ``DCSM()`` (guided BP, blocks 3-5 = 9 conv layers, scales 0.8 / 1.0 / 1.2, Eq. 4-5);
3. ``crf``: ``DenseCRF.refine`` (Eq. 6-8, 10 iterations) with ``num_workers=0`` and with every
   available core, interleaved batch by batch on the same maps;
4. ``mask``: Eq. 7's plain mask (``labels_from_maps``; the ``dcsm`` method of ``predict``);
5. ``files``: ``SegmentationWriter.write_output`` (mask, heatmaps, overlay, scores).

Configurations: ``vgg_small`` at the demo size (96 x 96, batches of 32) and ``vgg16``
(``weights=None``) at 500 x 500 (batches of 2). Each runs in its own process, so its peak memory
(``ru_maxrss``: the process; the CRF workers' largest, separately) is its own. Last, a real
``dcsm-lightning predict`` run over 1,000 images (``configs/synthetic.yaml``, DCSM + CRF, the
writer) reports the resident memory of the process after 100 and after 1,000 images (from
``/proc``, by counting the mask files written): flat memory means the two are close.

Then ``trainer.predict`` itself (``MultiLabelFCN`` with DCSM, ``DenseCRF(num_workers=0)``,
``SegmentationWriter``) in both configurations, seconds per image, with this source tree and,
given ``--before_src`` (another version's ``src/``, e.g. ``git worktree add ../base 80664a7``),
with that one, side by side; and the resume: ``--resume_images`` (200) predicted at 96 px, then
predicted again into the finished folder, the rerun's time as a share of the first's.

Usage: ``python benchmarks/pipeline_speed.py [--ckpt CKPT] [--small_images 64] [--large_images 2]
[--large_size 500] [--predict_images 1000] [--before_src DIR] [--resume_images 200]``.
``--ckpt``: a ``vgg_small`` checkpoint for the first configuration and the predict runs
(default: random weights). Set ``OMP_NUM_THREADS`` to
share the machine. The load average is printed before and after (the CPUs may be shared).
"""

from __future__ import annotations

import argparse
import inspect
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from predict_memory import predict_rss  # noqa: E402

from dcsm_lightning import DenseCRF, SaliencySegmentation, SegmentationWriter  # noqa: E402
from dcsm_lightning.data.adapter import as_adapter
from dcsm_lightning.data.classes import SYNTHETIC_CLASSES
from dcsm_lightning.data.samples import collate_batch, prepare_sample
from dcsm_lightning.data.synthetic import SyntheticScenes
from dcsm_lightning.models import MultiLabelFCN
from dcsm_lightning.saliency import DCSM, select_candidates
from dcsm_lightning.segmentation.callback import SegmentationOutput

STAGES = ("classify", "maps", "crf", "mask", "files")


def cores() -> int:
    return len(os.sched_getaffinity(0))


def batches(count: int, size: int, batch_size: int) -> list[dict]:
    """``count`` built-in scenes drawn at ``size`` px, collated into batches."""
    scenes = SyntheticScenes(count, size, seed=0, split="test")
    samples = [prepare_sample(scenes[i], size) for i in range(count)]
    return [collate_batch(samples[i : i + batch_size]) for i in range(0, count, batch_size)]


def classifier(backbone: str, ckpt: str | None, segmented: bool = False) -> MultiLabelFCN:
    """The classifier (``ckpt``'s weights, else random), with DCSM when ``segmented``; in the
    signature of this code version or of one before ``segmentation`` took one object."""
    kwargs = {}
    if segmented and "segmentation" in inspect.signature(MultiLabelFCN).parameters:
        kwargs["segmentation"] = SaliencySegmentation("dcsm")
    elif segmented:
        kwargs["saliency"] = "dcsm"
    if ckpt:  # Lightning drops saved hyper-parameters the signature no longer has
        return MultiLabelFCN.load_from_checkpoint(ckpt, map_location="cpu", **kwargs)
    torch.manual_seed(0)
    return MultiLabelFCN(len(SYNTHETIC_CLASSES), backbone=backbone, **kwargs)


def run_part(backbone: str, size: int, count: int, batch_size: int, ckpt: str | None) -> dict:
    """One configuration in this process: seconds per image per stage, and peak memory."""
    from dcsm_lightning.segmentation.flow import SaliencyMaps
    from dcsm_lightning.segmentation.labels import label_probs
    from dcsm_lightning.segmentation.methods import Method

    model = classifier(backbone, ckpt).eval()
    names = list(SYNTHETIC_CLASSES)
    segmentation = SaliencySegmentation(DCSM(), names, log_panels=False)
    crfs = {0: DenseCRF(num_workers=0), cores(): DenseCRF(num_workers=cores())}
    seconds = {stage: 0.0 for stage in STAGES} | {f"crf_workers_{w}": 0.0 for w in crfs}
    adapter = as_adapter(None)
    data = batches(count, size, batch_size)
    with tempfile.TemporaryDirectory() as out:
        writer = SegmentationWriter(out, class_names=names)
        for index, batch in enumerate(data):
            view = adapter(batch, index)
            tick = time.perf_counter()
            probs = SaliencyMaps.probs(model, view.image)
            candidates = select_candidates(probs, threshold=1.0, min_candidates=3)
            seconds["classify"] += time.perf_counter() - tick
            tick = time.perf_counter()
            maps = segmentation.strategies[0](model, view.image, candidates)
            seconds["maps"] += time.perf_counter() - tick
            tick = time.perf_counter()
            eq7 = label_probs(maps, candidates, view.valid)
            plain = eq7.labels(view.valid)
            seconds["mask"] += time.perf_counter() - tick
            refined = {}
            for workers, crf in crfs.items():  # the same maps, one after the other
                tick = time.perf_counter()
                refined[workers] = crf.refine(None, "predict", view, eq7)
                seconds[f"crf_workers_{workers}"] += time.perf_counter() - tick
            assert torch.equal(refined[0], refined[cores()]), "the CRF pool changed the masks"
            tick = time.perf_counter()
            masks = {Method("dcsm"): plain, Method("dcsm", "crf"): refined[0]}
            output = SegmentationOutput(view, probs, candidates, {"dcsm": maps}, masks)
            writer.write_output(None, output)
            seconds["files"] += time.perf_counter() - tick
    for crf in crfs.values():
        crf.close()  # joins the workers: their peak memory is in RUSAGE_CHILDREN
    per_image = {k: v / count for k, v in seconds.items()}
    return {
        "per_image": per_image,
        "images": count,
        "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "worker_peak_mib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
    }


class Scenes(torch.utils.data.Dataset):
    """Built-in scenes drawn and letterboxed when read, as a datamodule does."""

    def __init__(self, count: int, size: int) -> None:
        self.scenes, self.size = SyntheticScenes(count, size, seed=0, split="test"), size

    def __len__(self) -> int:
        return len(self.scenes)

    def __getitem__(self, index: int) -> dict:
        return prepare_sample(self.scenes[index], self.size)


def predict_part(backbone: str, size: int, count: int, batch_size: int, ckpt: str | None) -> dict:
    """``trainer.predict`` with DCSM, DenseCRF and the writer, timed; then the same again
    into the finished folder (the resume). Uses only names both code versions have."""
    import lightning.pytorch as pl

    model = classifier(backbone, ckpt, segmented=True)
    loader = torch.utils.data.DataLoader(
        Scenes(count, size), batch_size=batch_size, collate_fn=collate_batch
    )
    seconds = []
    with tempfile.TemporaryDirectory() as out:
        for _ in range(2):  # the first run, then the rerun over its finished folder
            writer = SegmentationWriter(out, class_names=list(SYNTHETIC_CLASSES))
            trainer = pl.Trainer(
                accelerator="cpu", logger=False, enable_progress_bar=False,
                enable_model_summary=False, callbacks=[writer, DenseCRF(num_workers=0)],
            )  # fmt: skip
            tick = time.perf_counter()
            trainer.predict(model, loader, return_predictions=False)
            seconds.append(time.perf_counter() - tick)
    return {"first": seconds[0] / count, "rerun": seconds[1] / count, "images": count}


def child(args: list[str], src: str | None = None) -> dict:
    """Run ``--part`` in a fresh process (its own peak memory); returns its JSON result.

    ``src``: the package source tree the child imports (another version's ``src``).
    """
    cmd = [sys.executable, __file__, "--part", *args]
    env = dict(os.environ, PYTHONPATH=src) if src else None
    done = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
    if done.returncode != 0:
        raise SystemExit(f"part {args} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def report(title: str, result: dict) -> None:
    s = result["per_image"]
    workers = cores()
    crf0, crfn = s["crf_workers_0"], s[f"crf_workers_{workers}"]
    rest = s["classify"] + s["maps"] + s["mask"] + s["files"]
    print(f"\n{title} ({result['images']} images), seconds per image:")
    print("  " + " | ".join(f"{k} {s[k]:.4f}" for k in ("classify", "maps", "mask", "files")))
    print(
        f"  crf workers=0 {crf0:.4f} | workers={workers} {crfn:.4f} -> speed-up {crf0 / crfn:.2f}"
    )
    for label, crf in (("workers=0", crf0), (f"workers={workers}", crfn)):
        total = rest + crf
        shares = ", ".join(
            f"{k} {100 * v / total:.0f}%"
            for k, v in (("classify", s["classify"]), ("maps", s["maps"]), ("crf", crf),
                         ("mask", s["mask"]), ("files", s["files"]))
        )  # fmt: skip
        print(f"  total ({label}) {total:.4f} s/image = {1 / total:.3g} images/s  [{shares}]")
    print(
        f"  peak memory: process {result['peak_mib']:.0f} MiB, largest CRF worker "
        f"{result['worker_peak_mib']:.0f} MiB"
    )


def predict_table(args: argparse.Namespace, small: list[str], large: list[str]) -> None:
    """``trainer.predict`` seconds per image, this version beside ``--before_src``'s."""
    versions = ({"before": args.before_src} if args.before_src else {}) | {"after": None}
    print(
        f"\ntrainer.predict (DCSM + DenseCRF workers=0 + writer), seconds per image, the best "
        f"of {args.predict_rounds} round(s), versions alternating:"
    )
    print("| configuration | " + " | ".join(versions) + " | after / before |")
    for title, part in (("vgg_small 96 px", small), (f"vgg16 {args.large_size} px", large)):
        per_image = {name: math.inf for name in versions}
        for _ in range(args.predict_rounds):  # alternating, so both see the same load drift
            for name, src in versions.items():
                seconds = child(["predict", *part], src)["first"]
                per_image[name] = min(per_image[name], seconds)
        ratio = per_image["after"] / per_image["before"] if "before" in per_image else math.nan
        cells = " | ".join(f"{v:.4f}" for v in per_image.values())
        print(f"| {title} | {cells} | {ratio:.3f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", default=None, help="vgg_small checkpoint (default: random)")
    parser.add_argument("--small_images", type=int, default=64)
    parser.add_argument("--large_images", type=int, default=2)
    parser.add_argument("--large_size", type=int, default=500, help="vgg16's image side")
    parser.add_argument("--predict_images", type=int, default=1000, help="0 skips the predict run")
    parser.add_argument(
        "--before_src", default=None,
        help="another version's src/ (e.g. a worktree of main): predict's seconds per image "
        "with it and with this one, side by side",
    )  # fmt: skip
    parser.add_argument("--resume_images", type=int, default=200, help="0 skips the resume run")
    parser.add_argument("--predict_rounds", type=int, default=1, help="rounds of the table")
    parser.add_argument("--table_only", action="store_true", help="only the predict table")
    parser.add_argument("--part", nargs=6, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.part:  # a child process: one configuration, result as JSON on the last line
        kind, backbone, size, count, batch, ckpt = args.part
        part = run_part if kind == "stages" else predict_part
        result = part(backbone, int(size), int(count), int(batch), ckpt or None)
        print(json.dumps(result))
        return
    threads = torch.get_num_threads()
    print(f"cores available: {cores()}, torch threads {threads}, load {os.getloadavg()}")
    print("CPU only: this script does not measure CUDA (run it where a GPU is for those figures)")
    small_args = ["vgg_small", "96", str(args.small_images), "32", args.ckpt or ""]
    large_args = ["vgg16", str(args.large_size), str(args.large_images), "2", ""]
    if args.table_only:
        predict_table(args, small_args, large_args)
        return
    small, large = child(["stages", *small_args]), child(["stages", *large_args])
    report("vgg_small, 96 x 96 (demo size)", small)
    report(f"vgg16 (weights=None), {args.large_size} x {args.large_size}", large)
    ratio = {k: large["per_image"][k] / small["per_image"][k] for k in ("maps", "crf_workers_0")}
    print(
        f"\nvgg16 {args.large_size} px / vgg_small 96 px per image: maps {ratio['maps']:.0f}x, "
        f"crf {ratio['crf_workers_0']:.0f}x"
    )
    predict_table(args, small_args, large_args)
    if args.resume_images:
        resume = child(["predict", "vgg_small", "96", str(args.resume_images), "32",
                        args.ckpt or ""])  # fmt: skip
        print(
            f"\npredict, {resume['images']} images at 96 px, then again into the finished "
            f"folder: first {resume['first']:.4f} s/image, rerun {resume['rerun']:.4f} s/image "
            f"= {100 * resume['rerun'] / resume['first']:.1f} % of the first"
        )
    if args.predict_images:
        predict_rss(args.predict_images, args.ckpt)
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
