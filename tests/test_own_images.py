"""README "Your own images", on tiny sizes: export a folder + CSV, fit, predict a folder of new
images with the shortest command, score the masks, write pseudo-labels from the tags."""

from __future__ import annotations

import json
import re
import runpy
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from demo_config import CONFIGS
from PIL import Image

from dcsm_lightning.app.cli import main
from dcsm_lightning.app.error_report import EXIT_USER_ERROR, run_command
from dcsm_lightning.errors import UserError

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
SIZE = 64
CLASSES = sorted(["disc", "square", "triangle", "ring", "cross", "star"])


def _example(name: str, *args: str) -> None:
    """Run ``python examples/<name> ARGS`` in this process."""
    argv = sys.argv
    sys.argv = [name, *args]
    try:
        runpy.run_path(str(EXAMPLES / name), run_name="__main__")
    finally:
        sys.argv = argv


def _data_args(own: Path) -> list[str]:
    return [
        f"--data.init_args.images={own / 'images'}",
        f"--data.init_args.tags={own / 'train.csv'}",
        f"--data.init_args.val_tags={own / 'val.csv'}",
        f"--data.init_args.size={SIZE}",
        "--data.init_args.batch_size=3",
        "--trainer.logger=false",
        "--trainer.enable_progress_bar=false",
    ]


@pytest.fixture(scope="module")
def trained_on_csv(tmp_path_factory):
    """``export_folder.py`` + ``fit --config configs/own_images.yaml`` on 6 + 3 images."""
    root = tmp_path_factory.mktemp("own_images")
    _example(
        "export_folder.py", "--out", str(root / "own"), "--size", str(SIZE), "train=6", "val=3"
    )
    config = ["--config", str(CONFIGS / "own_images.yaml"), *_data_args(root / "own")]
    run = ["--trainer.max_epochs=1", f"--trainer.default_root_dir={root / 'run'}"]
    main(["fit", *config, *run])
    return root, config, root / "run" / "checkpoints" / "last.ckpt"


def test_shortest_predict_mirrors_a_folder_of_new_images(trained_on_csv, monkeypatch, capsys):
    root, _, ckpt = trained_on_csv
    _example("export_folder.py", "--out", str(root / "new"), "--size", str(SIZE), "test=5")
    for folder in ("images", "masks"):  # one image in a subfolder: outputs mirror it
        (root / "new" / folder / "sub").mkdir()
        for name in (root / "new" / folder).glob("test_000004.*"):
            shutil.move(name, root / "new" / folder / "sub" / name.name)
    monkeypatch.chdir(root)  # LightningCLI saves its config.yaml under ./lightning_logs
    out = root / "predicted"
    args = ["--ckpt_path", str(ckpt), "--images", str(root / "new" / "images")]
    cli = main(["predict", *args, "--output_dir", str(out)])

    assert cli.datamodule.class_names == CLASSES and cli.datamodule.size == SIZE  # from ckpt
    ids = sorted(
        p.relative_to(out / "masks").with_suffix("").as_posix()
        for p in out.rglob("*.png")
        if "masks" in p.parts
    )
    assert ids == sorted([*(f"test_{i:06d}" for i in range(4)), "sub/test_000004"])
    for image_id in ids:
        image = Image.open(root / "new" / "images" / f"{image_id}.jpg")
        mask = np.asarray(Image.open(out / "masks" / f"{image_id}.png"))
        assert mask.shape == image.size[::-1]
        assert set(np.unique(mask)) <= set(range(len(CLASSES) + 1)) | {255}
        record = json.loads((out / "scores" / f"{image_id}.json").read_text())
        assert list(record["scores"]) == CLASSES and record["method"] == "dcsm"
        assert (out / "overlays" / f"{image_id}.png").is_file()

    args = [str(out / "masks"), str(root / "new" / "masks"), f"--num_classes={len(CLASSES)}"]
    _example("score_masks.py", *args)
    assert "over 5 masks" in capsys.readouterr().out
    # predict saves no config.yaml, so the same command runs again in the same folder
    assert not list(root.rglob("lightning_logs/**/config.yaml"))
    main(["predict", "--ckpt_path", str(ckpt), "--images", str(root / "new" / "images"),
          "--output_dir", str(root / "again")])  # fmt: skip
    assert len(list((root / "again" / "masks").rglob("*.png"))) == 5


def test_fit_refuses_an_earlier_runs_folder_in_one_line(trained_on_csv):
    root, config, _ = trained_on_csv
    again = [*config, "--trainer.max_epochs=1", f"--trainer.default_root_dir={root / 'run'}"]
    with pytest.raises(UserError, match=r"run/config.yaml exists: an earlier run saved"):
        main(["fit", *again])


@pytest.fixture(scope="module")
def pseudo_labels(trained_on_csv):
    """``pseudo-labels`` on the tagged training images (DCSM without CRF, to stay fast)."""
    root, config, ckpt = trained_on_csv
    out = root / "pseudo"
    fast = ["--method=dcsm", "--trainer.callbacks=null", f"--trainer.default_root_dir={out}_run"]
    main(["pseudo-labels", *config, f"--ckpt_path={ckpt}", f"--output_dir={out}", *fast])
    tags = {
        line.split(",")[0][: -len(".jpg")]: line.split(",")[1].split()
        for line in (root / "own" / "train.csv").read_text().splitlines()[1:]
    }
    return out, tags


def test_pseudo_labels_cover_the_tagged_training_images(pseudo_labels):
    out, tags = pseudo_labels
    written = sorted(p.stem for p in (out / "SegmentationClass").glob("*.png"))
    assert written == sorted(tags)
    listed = (out / "ImageSets" / "Segmentation" / "pseudo.txt").read_text().split()
    assert listed == written


def test_pseudo_labels_use_the_tags_as_candidates(pseudo_labels):
    out, tags = pseudo_labels
    for image_id, names in tags.items():
        mask = np.asarray(Image.open(out / "SegmentationClass" / f"{image_id}.png"))
        found = {CLASSES[v - 1] for v in np.unique(mask) if 0 < v < 255}
        assert found <= set(names)  # only tagged classes can win a pixel


def test_predict_without_data_names_the_options(trained_on_csv, tmp_path):
    _, _, ckpt = trained_on_csv
    with pytest.raises(UserError, match="predict needs data: give --images DIR"):
        main(["predict", "--ckpt_path", str(ckpt), "--output_dir", str(tmp_path / "out")])


def test_images_option_needs_a_model(tmp_path):
    with pytest.raises(UserError, match="predict needs a model: give --ckpt_path"):
        main(["predict", "--images", str(tmp_path), "--output_dir", str(tmp_path / "out")])
    with pytest.raises(UserError, match="checkpoint .*nope.ckpt does not exist"):
        main(["predict", "--images", str(tmp_path), "--ckpt_path", str(tmp_path / "nope.ckpt")])


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ("a.png,cat\nb.png,cat dgo\n", "t.csv line 3: unknown class 'dgo'"),
        ("a.png,cat\nghost.png,dog\n", "1 of 2 rows of .*t.csv name no image under"),
        ("a.png,cat\na.png,dog\n", "t.csv line 3: 'a.png' is listed twice"),
    ],
)
def test_bad_tags_stop_the_command_with_one_line(tmp_path, capsys, rows, message):
    (tmp_path / "images").mkdir()
    for name in ("a.png", "b.png"):
        Image.new("RGB", (SIZE, SIZE)).save(tmp_path / "images" / name)
    (tmp_path / "t.csv").write_text("image,tags\n" + rows)
    args = [
        "fit",
        "--model=dcsm_lightning.models.MultiLabelFCN",
        "--data=dcsm_lightning.data.TaggedImagesDataModule",
        f"--data.images={tmp_path / 'images'}",
        f"--data.tags={tmp_path / 't.csv'}",
        "--data.class_names=[cat, dog]",
        "--trainer.logger=false",
        f"--trainer.default_root_dir={tmp_path / 'run'}",
    ]
    assert run_command(main, args) == EXIT_USER_ERROR
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[0].startswith("dcsm-lightning: error:") and len(lines) <= 2
    assert re.search(message, lines[0])
