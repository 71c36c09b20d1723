"""The ``dcsm-lightning`` command end to end, on tiny synthetic data (``main([...])`` in-process)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import yaml

from dcsm_lightning.cli import main

CONFIGS = Path(__file__).resolve().parents[1] / "configs"

TINY = [
    "--data.init_args.num_train=16",
    "--data.init_args.num_val=8",
    "--data.init_args.batch_size=8",
    "--data.init_args.size=64",
    "--trainer.logger=false",
    "--trainer.enable_progress_bar=false",
]


def _tiny(tmp_path: Path, *extra: str) -> list[str]:
    """The demo config, with its checkpoint folder moved under ``tmp_path``, on tiny data."""
    config = yaml.safe_load((CONFIGS / "synthetic.yaml").read_text())
    checkpoint = config["trainer"]["callbacks"][0]
    assert checkpoint["class_path"].endswith("ModelCheckpoint")
    checkpoint["init_args"]["dirpath"] = str(tmp_path / "ckpt")
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return ["--config", str(path), *TINY, f"--trainer.default_root_dir={tmp_path}", *extra]


@pytest.mark.parametrize("config", sorted(p.name for p in CONFIGS.glob("*.yaml")))
def test_every_config_parses(config, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", str(CONFIGS / config), "--print_config"])
    assert exit_info.value.code == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["model"]["class_path"] == "dcsm_lightning.models.MultiLabelFCN"


def test_strategy_is_swapped_from_the_command_line(capsys):
    with pytest.raises(SystemExit):
        main([
            "validate", "--config", str(CONFIGS / "synthetic.yaml"),
            "--model.init_args.saliency=dcsm_lightning.saliency.LayerGradient",
            "--print_config",
        ])
    printed = yaml.safe_load(capsys.readouterr().out)
    saliency = printed["model"]["init_args"]["saliency"]
    assert saliency["class_path"] == "dcsm_lightning.saliency.LayerGradient"


def test_fit_saves_a_checkpoint_that_resumes(tmp_path):
    main(["fit", *_tiny(tmp_path, "--trainer.max_epochs=1")])
    last = tmp_path / "ckpt" / "last.ckpt"
    assert last.is_file()
    cli = main(["fit", *_tiny(tmp_path, "--trainer.max_epochs=2", f"--ckpt_path={last}")])
    assert cli.trainer.current_epoch == 2
    assert cli.trainer.global_step == 2 * 2  # 16 images / batch 8, two epochs in all


def test_compare_writes_table_csv_and_chart(tmp_path, capsys):
    main(["fit", *_tiny(tmp_path, "--trainer.max_epochs=1")])
    out = tmp_path / "report"
    main(["compare", *_tiny(tmp_path), f"--ckpt_path={tmp_path / 'ckpt' / 'last.ckpt'}", f"--output_dir={out}"])
    rows = list(csv.DictReader((out / "comparison.csv").open()))
    methods = [r["method"] for r in rows]
    assert sorted(methods) == ["dcsm", "dcsm+crf", "simonyan", "simonyan+crf"]
    assert {"method", "miou", "background"} <= set(rows[0])
    assert (out / "comparison.md").read_text().count("|") > 10
    assert (out / "comparison.png").stat().st_size > 1000
    assert "dcsm+crf" in capsys.readouterr().out


def test_synth_exports_voc_layout(tmp_path):
    main(["synth", "--out", str(tmp_path / "voc"), "--num-train", "4", "--num-val", "2", "--seed", "3"])
    root = tmp_path / "voc"
    assert len(list((root / "JPEGImages").iterdir())) == 6
    assert len(list((root / "SegmentationClass").iterdir())) == 6
    assert len((root / "ImageSets" / "Segmentation" / "val.txt").read_text().split()) == 2
