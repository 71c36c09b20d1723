"""Where ``predict`` writes (issue 20): never into the images it reads, never two models' or two
settings' outputs mixed in one folder, ``~`` expanded and empty paths refused, nothing left in
the working folder. Each case runs the installed command in a subprocess."""

from __future__ import annotations

import json
import shutil

import torch
from robust_helpers import error_line, run_cli

from dcsm_lightning.app.error_report import EXIT_USER_ERROR
from dcsm_lightning.outputs.run_record import RECORD_FILE


def _files(folder):
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def _predict(checkpoint, images, output, cwd, *extra):
    return run_cli(
        "predict", f"--ckpt_path={checkpoint}", f"--images={images}", f"--output_dir={output}",
        "--trainer.enable_progress_bar=false", *extra, cwd=cwd,
    )  # fmt: skip


def test_output_folder_inside_the_images_is_refused(checkpoint, images, tmp_path):
    before = _files(images)
    for output in (images / "pred", images):
        done = _predict(checkpoint, images, output, tmp_path)
        assert done.returncode == EXIT_USER_ERROR, done.stderr[-3000:]
        assert error_line(done.stderr) == (
            f"output folder {output} is inside the image folder {images}: "
            "its files would be read as images by the next run"
        )
        assert _files(images) == before


def _renamed_checkpoint(checkpoint, path):
    """The same weights under other class names: another model as far as a folder knows."""
    saved = torch.load(checkpoint, weights_only=True)
    names = saved["hyper_parameters"]["class_names"]
    saved["hyper_parameters"]["class_names"] = [f"{n}_b" for n in names]
    torch.save(saved, path)
    return path


def test_second_checkpoint_is_refused_and_overwrite_replaces(checkpoint, images, tmp_path):
    output = tmp_path / "out"
    first = _predict(checkpoint, images, output, tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    record = json.loads((output / RECORD_FILE).read_text())
    assert record["checkpoint"]["path"] == str(checkpoint)
    before = {p: p.read_bytes() for p in output.rglob("*") if p.is_file()}

    other = _renamed_checkpoint(checkpoint, tmp_path / "other.ckpt")
    second = _predict(other, images, output, tmp_path)
    assert second.returncode == EXIT_USER_ERROR, second.stderr[-3000:]
    assert error_line(second.stderr) == (
        f"output folder {output} holds the outputs of another checkpoint ({checkpoint}); "
        f"this run predicts with {other}"
    )
    assert "--overwrite" in second.stderr
    assert {p: p.read_bytes() for p in output.rglob("*") if p.is_file()} == before

    replaced = _predict(other, images, output, tmp_path, "--overwrite=true")
    assert replaced.returncode == 0, replaced.stderr[-3000:]
    for scores in (output / "scores").glob("*.json"):
        assert all(name.endswith("_b") for name in json.loads(scores.read_text())["scores"])
    heatmaps = [p.stem for p in (output / "heatmaps").glob("*.png")]
    assert heatmaps and all(stem.endswith("_b") for stem in heatmaps)  # none of A's is left


def test_other_settings_are_refused(checkpoint, images, tmp_path):
    output = tmp_path / "out"
    assert _predict(checkpoint, images, output, tmp_path).returncode == 0
    before = _files(output)
    done = _predict(checkpoint, images, output, tmp_path, "--method=dcsm")
    assert done.returncode == EXIT_USER_ERROR, done.stderr[-3000:]
    assert error_line(done.stderr) == (
        f"output folder {output} was written with other settings: method None there, "
        "'dcsm' here"
    )
    assert _files(output) == before


def test_outputs_without_a_record_are_not_mixed(checkpoint, images, tmp_path):
    output = tmp_path / "out"
    (output / "masks").mkdir(parents=True)
    (output / "masks" / "mine.png").write_bytes(b"someone's mask")
    done = _predict(checkpoint, images, output, tmp_path)
    assert done.returncode == EXIT_USER_ERROR, done.stderr[-3000:]
    assert error_line(done.stderr) == (
        f"output folder {output} already holds masks/ that no dcsm-lightning run recorded "
        f"({RECORD_FILE} is missing)"
    )
    assert _files(output) == ["masks/mine.png"]


def test_an_image_is_complete_only_with_every_kind_of_this_run(checkpoint, images, tmp_path):
    output = tmp_path / "out"
    first = _predict(checkpoint, images, output, tmp_path, "--write_overlays=false")
    assert first.returncode == 0, first.stderr[-3000:]
    assert not (output / "overlays").exists()
    second = _predict(checkpoint, images, output, tmp_path)
    assert second.returncode == 0, second.stderr[-3000:]
    ids = sorted(p.stem for p in (output / "masks").glob("*.png"))
    assert sorted(p.stem for p in (output / "overlays").glob("*.png")) == ids


def test_tilde_is_expanded_and_an_empty_output_path_refused(checkpoint, images, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    work = tmp_path / "work"
    work.mkdir()
    env = {**__import__("robust_helpers").cli_env(), "HOME": str(home)}
    done = run_cli(
        "predict", f"--ckpt_path={checkpoint}", f"--images={images}", "--output_dir=~/preds",
        cwd=work, env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert (home / "preds" / "masks").is_dir()
    assert not (work / "~").exists()
    empty = _predict(checkpoint, images, "", work)
    assert empty.returncode == EXIT_USER_ERROR, empty.stderr[-3000:]
    assert error_line(empty.stderr) == "output_dir is empty: give a folder"
    assert _files(work) == []


def test_predict_leaves_nothing_in_the_working_folder(checkpoint, images, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    done = _predict(checkpoint, images, tmp_path / "out", work)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "dirpath has changed" not in done.stderr
    failed = _predict(checkpoint, images, tmp_path / "out", work, "--method=nope")
    assert failed.returncode == EXIT_USER_ERROR
    assert list(work.iterdir()) == []


def test_symlinked_subfolder_is_followed(checkpoint, images, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    for image in sorted(images.glob("*.jpg"))[:2]:
        shutil.move(image, elsewhere / image.name)
    (images / "linked").symlink_to(elsewhere, target_is_directory=True)
    count = len(list(images.glob("*.jpg"))) + 2
    done = _predict(checkpoint, images, tmp_path / "out", tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert len(list((tmp_path / "out" / "masks").rglob("*.png"))) == count
    assert len(list((tmp_path / "out" / "masks" / "linked").glob("*.png"))) == 2
