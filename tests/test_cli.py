"""The ``dcsm-lightning`` command end to end on tiny synthetic data (``main([...])`` in-process)."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import tempfile
from argparse import ArgumentError
from importlib import import_module
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from demo_config import CONFIGS, PAPER_STRATEGIES, TINY, checkpoints, demo_config
from PIL import Image

from dcsm_lightning.app.cli import main
from dcsm_lightning.data import SyntheticDataModule
from dcsm_lightning.errors import UserError
from dcsm_lightning.models import MultiLabelFCN


def _tiny(tmp_path: Path, *extra: str, monitor: str | None = None) -> list[str]:
    """The demo config, with its checkpoint folder moved under ``tmp_path``, on tiny data;
    ``monitor`` replaces the metric that picks ``best.ckpt`` (minimised then)."""
    config = demo_config(tmp_path / "ckpt")
    for checkpoint in checkpoints(config):
        if monitor and "monitor" in checkpoint["init_args"]:
            checkpoint["init_args"].update(monitor=monitor, mode="min")
    path = tmp_path / "input.yaml"
    path.write_text(yaml.safe_dump(config))
    run_dir = tempfile.mkdtemp(dir=tmp_path, prefix="run")  # LightningCLI saves config.yaml here
    return ["--config", str(path), *TINY, f"--trainer.default_root_dir={run_dir}", *extra]


@pytest.mark.parametrize("config", sorted(p.name for p in CONFIGS.glob("*.yaml")))
def test_every_config_parses(config, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", str(CONFIGS / config), "--print_config"])
    assert exit_info.value.code == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    model = "SegmentationNet" if config.endswith("_seg.yaml") else "MultiLabelFCN"
    assert printed["model"]["class_path"] == f"dcsm_lightning.models.{model}"


def test_strategy_is_swapped_from_the_command_line(capsys):
    with pytest.raises(SystemExit):
        main(
            [
                "validate",
                "--config",
                str(CONFIGS / "synthetic.yaml"),
                "--model.segmentation.saliency=dcsm_lightning.saliency.LayerGradient",
                "--print_config",
            ]
        )
    printed = yaml.safe_load(capsys.readouterr().out)
    saliency = printed["model"]["init_args"]["segmentation"]["init_args"]["saliency"]
    assert saliency["class_path"] == "dcsm_lightning.saliency.LayerGradient"


def test_fit_saves_a_checkpoint_that_resumes(tmp_path, capsys):
    # the demo config's length is max_steps (max_epochs only caps it): resume with more steps
    args = _tiny(tmp_path, "--trainer.max_steps=2")
    main(["fit", *args])
    last = tmp_path / "ckpt" / "last.ckpt"
    assert last.is_file()
    out = capsys.readouterr().out  # fit ends by saying where the checkpoints are, what's next
    assert "Checkpoints: " in out and str(last) in out
    assert f"Next: dcsm-lightning compare --config {args[1]} --ckpt_path {last}" in out
    cli = main(["fit", *_tiny(tmp_path, "--trainer.max_steps=4", f"--ckpt_path={last}")])
    assert cli.trainer.current_epoch == 2
    assert cli.trainer.global_step == 2 * 2  # 16 images / batch 8, two epochs in all


def test_last_checkpoint_is_the_final_epoch_even_without_improvement(tmp_path):
    # the smallest "epoch" never improves after the first: best.ckpt stays there
    cli = main(["fit", *_tiny(tmp_path, "--trainer.max_epochs=3", monitor="epoch")])
    assert cli.trainer.global_step == 3 * 2
    saved = {
        p.name: torch.load(p, map_location="cpu", weights_only=False)["global_step"]
        for p in (tmp_path / "ckpt").glob("*.ckpt")
    }
    assert saved == {"best.ckpt": 2, "last.ckpt": 3 * 2}


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    """A run folder and the checkpoint of one tiny training epoch."""
    root = tmp_path_factory.mktemp("trained")
    main(["fit", *_tiny(root, "--trainer.max_epochs=1")])
    return root, root / "ckpt" / "last.ckpt"


def test_compare_writes_table_csv_and_chart(trained, capsys):
    root, ckpt = trained
    out = root / "report"
    main(["compare", *_tiny(root), f"--ckpt_path={ckpt}", f"--output_dir={out}"])
    rows = list(csv.DictReader((out / "comparison.csv").open()))
    methods = [r["method"] for r in rows]
    plain = ["dcsm", "simonyan", "gradcam", "distinct_gradcam", "ig", "distinct_ig"]
    assert sorted(methods) == sorted(plain + [f"{m}+crf" for m in plain])
    assert {"method", "miou", "background"} <= set(rows[0])
    assert (out / "comparison.md").read_text().count("|") > 10
    assert (out / "comparison.png").stat().st_size > 1000
    out = capsys.readouterr().out
    assert "dcsm+crf" in out
    assert "Validate metric" not in out  # only our table, not Lightning's one row per metric


def test_compare_without_a_logger_saves_no_config_and_runs_again_in_the_same_folder(trained):
    root, ckpt = trained
    args = [*_tiny(root), f"--ckpt_path={ckpt}", PAPER_STRATEGIES, "--trainer.limit_val_batches=1"]
    root_arg = next(a for a in args if a.startswith("--trainer.default_root_dir="))
    run_dir = Path(root_arg.split("=", 1)[1])
    for out in ("first", "second"):  # the second used to stop: "config.yaml exists"
        main(["compare", *args, f"--output_dir={root / out}"])
        assert (root / out / "comparison.csv").is_file()
    assert not list(run_dir.rglob("config.yaml"))


def test_synth_exports_voc_layout(tmp_path):
    main(
        [
            "synth",
            "--out",
            str(tmp_path / "voc"),
            "--num_train",
            "4",
            "--num_val",
            "2",
            "--seed",
            "3",
        ]
    )
    root = tmp_path / "voc"
    assert len(list((root / "JPEGImages").iterdir())) == 6
    assert len(list((root / "SegmentationClass").iterdir())) == 6
    assert len((root / "ImageSets" / "Segmentation" / "val.txt").read_text().split()) == 2


def test_predict_writes_masks_heatmaps_overlays_and_scores_then_resumes(trained, tmp_path):
    root, ckpt = trained
    out = tmp_path / "pred"

    def args() -> list[
        str
    ]:  # a fresh run folder each time: LightningCLI never overwrites config.yaml
        return [
            "predict",
            *_tiny(root, PAPER_STRATEGIES),
            f"--ckpt_path={ckpt}",
            f"--output_dir={out}",
        ]

    main(args())
    masks = sorted(p.stem for p in (out / "masks").glob("*.png"))
    assert len(masks) == 8  # the validation split
    assert sorted(p.stem for p in (out / "scores").glob("*.json")) == masks
    scores = json.loads((out / "scores" / f"{masks[0]}.json").read_text())
    assert scores["method"] == "dcsm+crf"  # the paper's method comes first in the config
    assert len(list((out / "overlays").glob("*.png"))) == 8
    assert list((out / "heatmaps").glob("*.png"))
    stamp = (out / "masks" / f"{masks[0]}.png").stat().st_mtime_ns
    cli = main(args())  # everything exists: skipped, nothing rewritten
    writer = [c for c in cli.trainer.callbacks if type(c).__name__ == "SegmentationWriter"][0]
    assert (writer.written, writer.skipped) == (0, 8)
    assert (out / "masks" / f"{masks[0]}.png").stat().st_mtime_ns == stamp
    main([*args(), "--overwrite=true"])  # jsonargparse booleans take a value
    assert (out / "masks" / f"{masks[0]}.png").stat().st_mtime_ns != stamp


def test_pseudo_labels_write_the_train_split_in_voc_layout(trained, tmp_path):
    root, ckpt = trained
    out = tmp_path / "pseudo"
    main(
        [
            "pseudo-labels",
            *_tiny(root, PAPER_STRATEGIES),
            f"--ckpt_path={ckpt}",
            f"--output_dir={out}",
        ]
    )
    written = sorted(p.stem for p in (out / "SegmentationClass").glob("*.png"))
    assert len(written) == 16 and all(name.startswith("train") for name in written)
    listed = (out / "ImageSets" / "Segmentation" / "pseudo.txt").read_text().split()
    assert sorted(listed) == written


def test_pseudo_labels_method_and_uncertain_threshold(trained, tmp_path):
    root, ckpt = trained
    void = {}
    for threshold in (None, 0.99):
        out = tmp_path / f"pseudo_{threshold}"
        extra = [] if threshold is None else [f"--uncertain_threshold={threshold}"]
        args = [f"--ckpt_path={ckpt}", f"--output_dir={out}", "--method", "dcsm", *extra]
        main(["pseudo-labels", *_tiny(root, PAPER_STRATEGIES), *args])
        masks = [np.array(Image.open(p)) for p in (out / "SegmentationClass").glob("*.png")]
        assert len(masks) == 16
        void[threshold] = sum(int((m == 255).sum()) for m in masks)
    assert void[0.99] > void[None]  # uncertain pixels became void


def test_bad_uncertain_threshold_is_refused(trained, tmp_path, capsys):
    root, ckpt = trained
    args = [f"--ckpt_path={ckpt}", f"--output_dir={tmp_path}"]
    with pytest.raises(ValueError, match="uncertain_threshold"):
        main(["pseudo-labels", *_tiny(root), *args, "--uncertain_threshold=1.5"])
    with pytest.raises(ArgumentError, match="uncertain_threshold"):  # a parse error
        main(["pseudo-labels", *_tiny(root), *args, "--uncertain_threshold=high"])


def test_pseudo_labels_without_output_dir_or_checkpoint_is_refused(trained, capsys):
    root, _ = trained
    with pytest.raises(UserError, match="writes nothing without --output_dir DIR or --ckpt_path"):
        main(["pseudo-labels", *_tiny(root)])


def test_help_lists_every_subcommand(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for command in ("fit", "validate", "predict", "compare", "pseudo-labels", "synth"):
        assert f"    {command} " in out


@pytest.mark.parametrize(
    ("command", "options"),
    [
        ("compare", ["--output_dir", "--class_names", "--include", "--ckpt_path"]),
        ("predict", ["--output_dir", "--overwrite", "--method", "--uncertain_threshold",
                     "--images"]),
        ("pseudo-labels", ["--output_dir", "--overwrite", "--method", "--uncertain_threshold",
                           "--images", "--candidates"]),
        ("synth", ["--out", "--num_train", "--num_val", "--seed", "--size", "--overwrite"]),
    ],
)  # fmt: skip
def test_subcommand_help_lists_its_options(command, options, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for option in options:
        assert option in out, option
    assert "--num-train" not in out  # underscores everywhere


def test_compare_options_are_yaml_keys(tmp_path, capsys):
    config = tmp_path / "compare.yaml"
    config.write_text(yaml.safe_dump({"output_dir": "report", "class_names": ["a", "b"]}))
    args = ["--config", str(CONFIGS / "synthetic.yaml"), "--config", str(config)]
    with pytest.raises(SystemExit):
        main(["compare", *args, "--print_config"])
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["output_dir"] == "report" and printed["class_names"] == ["a", "b"]


def test_version_prints_the_installed_version(capsys):
    import dcsm_lightning

    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"dcsm-lightning {dcsm_lightning.__version__}"


def test_short_class_names_work_without_a_config():
    """``--model=MultiLabelFCN`` / ``--data=SyntheticDataModule`` resolve in a fresh process
    with no config that imported them first, and ``--model.help`` takes the short name."""
    command = [sys.executable, "-m", "dcsm_lightning.app.cli", "fit"]
    out = subprocess.run(
        [*command, "--model=MultiLabelFCN", "--data=SyntheticDataModule", "--print_config"],
        capture_output=True, text=True, check=True,
    ).stdout
    printed = yaml.safe_load(out)

    def resolve(class_path: str) -> type:
        module, _, name = class_path.rpartition(".")
        return getattr(import_module(module), name)

    assert resolve(printed["model"]["class_path"]) is MultiLabelFCN
    assert resolve(printed["data"]["class_path"]) is SyntheticDataModule
    out = subprocess.run(
        [*command, "--model.help", "MultiLabelFCN"], capture_output=True, text=True, check=True
    ).stdout
    assert "--model.segmentation" in out
