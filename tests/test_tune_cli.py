"""``dcsm-lightning tune`` end to end on a tiny VOC-layout export: val is never read, and
``tuned.yaml`` round-trips through ``compare``."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from dcsm_lightning.app.cli import main
from dcsm_lightning.crf import DenseCRF
from dcsm_lightning.data import VOCDataModule
from dcsm_lightning.data.synthetic import export_voc
from dcsm_lightning.errors import UserError
from dcsm_lightning.tuning import tuning_loader


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> tuple[Path, Path, Path]:
    """A VOC-layout export (8 train, 2 val images of 64 px), a config and the checkpoint of
    one training step."""
    root = tmp_path_factory.mktemp("tune")
    voc = export_voc(root / "voc", num_train=8, num_val=2, seed=0, size=64)
    config = {
        "trainer": {
            "logger": False,
            "enable_progress_bar": False,
            "callbacks": [
                {"class_path": "dcsm_lightning.crf.DenseCRF", "init_args": {"num_workers": 0}}
            ],
        },
        "model": {
            "class_path": "dcsm_lightning.models.MultiLabelFCN",
            "init_args": {
                "backbone": "vgg_small",
                "segmentation": {
                    "class_path": "dcsm_lightning.SaliencySegmentation",
                    "init_args": {"saliency": ["dcsm"], "log_panels": False},
                },
            },
        },
        "data": {
            "class_path": "dcsm_lightning.data.VOCDataModule",
            "init_args": {"root": str(voc), "size": 64, "batch_size": 4, "train_split": "train"},
        },
    }
    path = root / "input.yaml"
    path.write_text(yaml.safe_dump(config))
    main(
        [
            "fit",
            "--config",
            str(path),
            "--trainer.max_steps=1",
            f"--trainer.default_root_dir={root / 'run'}",
        ]
    )
    (ckpt,) = (root / "run" / "checkpoints").glob("*.ckpt")
    return voc, path, ckpt


def _tune(config: Path, ckpt: Path, out: Path, *extra: str) -> None:
    main(
        ["tune", "--config", str(config), f"--ckpt_path={ckpt}", f"--output_dir={out}",
         "--folds=2", "--crf_workers=0", *extra]
    )  # fmt: skip


def test_tune_never_reads_val(setup, tmp_path):
    voc, config, ckpt = setup
    val_list = voc / "ImageSets" / "Segmentation" / "val.txt"
    hidden = val_list.with_suffix(".hidden")
    val_list.rename(hidden)  # val cannot be read at all now
    try:
        with pytest.raises((FileNotFoundError, UserError, ValueError)):
            main(["validate", "--config", str(config), f"--ckpt_path={ckpt}"])
        _tune(config, ckpt, tmp_path / "out", "--num_images=4")
    finally:
        hidden.rename(val_list)
    tuned = yaml.safe_load((tmp_path / "out" / "tuned.yaml").read_text())
    segmentation = tuned["model"]["init_args"]["segmentation"]
    assert segmentation["class_path"].endswith("SaliencySegmentation")
    assert segmentation["init_args"]["saliency"][0]["class_path"].endswith("DCSM")
    table = (tmp_path / "out" / "tuning.md").read_text()
    assert "4 of the 8 TRAIN images" in table
    assert "| dcsm | tuned:" in table


def test_tuned_yaml_round_trips_through_compare(setup, tmp_path):
    voc, config, ckpt = setup
    out = tmp_path / "out"
    _tune(config, ckpt, out, "--num_images=8")  # every TRAIN image
    tuned_path = out / "tuned.yaml"
    tuned = yaml.safe_load(tuned_path.read_text())
    # compare on the same 8 TRAIN images (val_split=train) with --config tuned.yaml
    cli = main(
        ["compare", "--config", str(config), "--config", str(tuned_path), f"--ckpt_path={ckpt}",
         "--data.init_args.val_split=train", f"--output_dir={tmp_path / 'cmp'}"]
    )  # fmt: skip
    strategy = cli.model.segmentation.strategies[0]
    tuned_segmentation = tuned["model"]["init_args"]["segmentation"]["init_args"]
    chosen = tuned_segmentation["saliency"][0]["init_args"]
    assert strategy.alpha == chosen["alpha"]
    assert list(strategy.layers) == chosen["layers"]
    assert list(strategy.scales) == chosen["scales"]
    rule = cli.model.segmentation.source.candidates
    assert rule.min_candidates == tuned_segmentation["min_candidates"]
    assert cli.model.segmentation.log_panels is False  # the config's, kept under tuned.yaml
    crf = [cb for cb in cli.trainer.callbacks if isinstance(cb, DenseCRF)]
    settings = tuned["trainer"]["callbacks"][0]["init_args"]["settings"]
    assert len(crf) == 1 and vars(crf[0].settings) == settings
    # compare's mIoU on those images is the tuned row of the table (rounded to 0.1)
    rows = {r["method"]: r for r in csv.DictReader((tmp_path / "cmp" / "comparison.csv").open())}
    table = (out / "tuning.md").read_text().splitlines()
    tuned_row = next(line for line in table if line.startswith("| dcsm | tuned:"))
    cells = [c.strip() for c in tuned_row.strip("|").split("|")]
    assert 100 * float(rows["dcsm+crf"]["miou"]) == pytest.approx(float(cells[3]), abs=0.051)
    assert 100 * float(rows["dcsm"]["miou"]) == pytest.approx(float(cells[2]), abs=0.051)


def test_tune_refuses_to_overwrite_and_needs_a_checkpoint(setup, tmp_path, capsys):
    voc, config, ckpt = setup
    (tmp_path / "tuned.yaml").write_text("mine")
    with pytest.raises(UserError, match="exists"):
        _tune(config, ckpt, tmp_path)
    assert (tmp_path / "tuned.yaml").read_text() == "mine"
    with pytest.raises(UserError, match="ckpt_path"):
        main(["tune", "--config", str(config), f"--output_dir={tmp_path / 'x'}"])


def test_masks_folder_replaces_the_datasets_masks_for_the_images_it_names(setup, tmp_path):
    voc, _, _ = setup
    datamodule = VOCDataModule(str(voc), size=64, batch_size=4, train_split="train")
    ids = (voc / "ImageSets" / "Segmentation" / "train.txt").read_text().split()
    mine = np.zeros((64, 64), dtype=np.uint8)
    mine[10:30, 5:50] = 2  # a user's mask: unlike the dataset's
    for name in ids[1:3]:
        Image.fromarray(mine).save(tmp_path / f"{name}.png")
    loader, line = tuning_loader(datamodule, 50, masks=tmp_path)
    assert line == f"2 TRAIN images with masks in {tmp_path}"
    (batch,) = list(loader)
    assert batch["id"] == ids[1:3]
    assert torch.equal(batch["mask"], torch.from_numpy(mine).long().expand(2, 64, 64))
    (tmp_path / "other").mkdir()
    Image.fromarray(mine).save(tmp_path / "other" / "nobody.png")
    with pytest.raises(UserError, match="none of its .png files"):
        tuning_loader(datamodule, 50, masks=tmp_path / "other")
