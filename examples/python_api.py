"""DCSM maps for one image file from Python, without a Trainer: heatmap and overlay PNGs.

    python examples/python_api.py photo.jpg --ckpt runs/synthetic/version_0/checkpoints/last.ckpt

The ten lines of ``maps_for_file`` are the whole API path: load, normalise, score, pick
candidates, DCSM maps (Eq. 3-5), CRF masks (Eq. 6-8), save. Without ``--ckpt`` an untrained
``vgg_small`` stands in (the maps are then meaningless, but the path is the same).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from dcsm_lightning import MultiLabelFCN, create_saliency, crf_labels_from_maps, select_candidates
from dcsm_lightning.data.transforms import load_rgb, normalize
from dcsm_lightning.files import save_heatmap_png, save_overlay_png


def maps_for_file(model: MultiLabelFCN, image_file: str, out: Path) -> list[Path]:
    """Write ``heatmap_<class>.png`` (the top class's DCSM map) and ``overlay.png`` (CRF mask)."""
    rgb = load_rgb(image_file)  # uint8 H x W x 3
    image = normalize(rgb)[None]  # 1 x 3 x H x W, ImageNet-normalised
    probs = model.predict_probs(image)  # 1 x K in [0, 1]
    candidates = select_candidates(probs)  # 1 x K bool: score > 0.5, topped up to 3
    maps = create_saliency("dcsm")(model, image, candidates)  # 1 x K x H x W in [0, 1]
    labels = crf_labels_from_maps(rgb, maps[0], candidates[0])  # H x W: 0 = bg, k + 1
    top = int(probs[0].argmax())
    heatmap = save_heatmap_png(
        out / f"heatmap_{model.class_names[top]}.png", maps[0, top], overwrite=True
    )
    overlay = save_overlay_png(out / "overlay.png", rgb, labels.numpy(), overwrite=True)
    return [heatmap, overlay]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("image")
    parser.add_argument("--ckpt", help="a MultiLabelFCN checkpoint (e.g. last.ckpt)")
    parser.add_argument("--out", type=Path, default=Path("runs/python_api"))
    args = parser.parse_args(argv)
    if args.ckpt:
        model = MultiLabelFCN.load_from_checkpoint(args.ckpt, map_location="cpu")
    else:
        model = MultiLabelFCN(num_classes=6, backbone="vgg_small")
    for path in maps_for_file(model.eval(), args.image, args.out):
        print(path)


if __name__ == "__main__":
    main()
