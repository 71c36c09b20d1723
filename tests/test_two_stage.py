"""Both stages through the ``dcsm-lightning`` command on tiny synthetic data: classifier ->
pseudo-labels -> SegmentationNet -> one comparison table; predict with the student."""

from __future__ import annotations

import csv
import tempfile
from pathlib import Path

import numpy as np
import torch
import yaml
from demo_config import PAPER_STRATEGIES, TINY, demo_config, seg_config
from PIL import Image

from dcsm_lightning.app.cli import main


def _command(tmp_path: Path, config: dict, name: str, *extra: str):
    """A function giving the arguments of one run of ``config``, in a fresh run folder."""
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))

    def args(*more: str) -> list[str]:
        run_dir = tempfile.mkdtemp(dir=tmp_path, prefix="run")  # LightningCLI saves config.yaml
        return [
            "--config",
            str(path),
            *TINY,
            "--trainer.max_epochs=1",
            f"--trainer.default_root_dir={run_dir}",
            *extra,
            *more,
        ]

    return args


def test_two_stages_end_to_end(tmp_path):
    teacher = _command(tmp_path, demo_config(tmp_path / "ckpt1"), "teacher", PAPER_STRATEGIES)
    main(["fit", *teacher()])
    ckpt1 = tmp_path / "ckpt1" / "last.ckpt"
    pseudo = tmp_path / "pseudo"
    main(["pseudo-labels", *teacher(f"--ckpt_path={ckpt1}", f"--output_dir={pseudo}")])
    main(["compare", *teacher(f"--ckpt_path={ckpt1}", f"--output_dir={tmp_path / 'c1'}")])

    student = _command(
        tmp_path,
        seg_config(tmp_path / "ckpt2"),
        "student",
        f"--data.init_args.train_mask_root={pseudo}",
        "--model.init_args.dilation=2",
    )
    cli = main(["fit", *student(f"--model.init_args.pretrained={ckpt1}")])
    classifier = torch.load(ckpt1, map_location="cpu", weights_only=True)["state_dict"]
    first = cli.model.net.features.conv1_1.weight.detach()
    init = classifier["backbone.features.conv1_1.weight"]
    # started from the classifier's conv layers (close after one epoch), then trained
    assert 0 < (first - init).abs().max() < 0.1 * init.abs().max()
    ckpt2 = tmp_path / "ckpt2" / "last.ckpt"
    out = tmp_path / "c2"
    include = ["--include", str(tmp_path / "c1" / "comparison.csv")]  # one file; --include+ appends
    main(["compare", *student(f"--ckpt_path={ckpt2}", f"--output_dir={out}", *include)])
    rows = list(csv.DictReader((out / "comparison.csv").open()))
    methods = ["dcsm", "dcsm+crf", "simonyan", "simonyan+crf", "segnet", "segnet+crf"]
    assert [r["method"] for r in rows] == methods
    assert all(0 <= float(r["miou"]) <= 1 for r in rows)

    predictions = tmp_path / "pred"
    main(["predict", *student(f"--ckpt_path={ckpt2}", f"--output_dir={predictions}")])
    masks = sorted((predictions / "masks").glob("*.png"))
    assert len(masks) == 8 and np.array(Image.open(masks[0])).shape == (64, 64)
