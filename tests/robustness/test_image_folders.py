"""A folder of images with tags, as ``predict --images`` / ``pseudo-labels`` / ``compare`` meet
it (issue 20): data options beside ``--images``, a zero size, EXIF orientation, absolute paths
in the CSV, a folder given as the tag file, no tags, no masks. Each case runs the installed
command in a subprocess."""

from __future__ import annotations

from PIL import Image
from robust_helpers import error_line, run_cli, tag_rows
from test_class_lists import tagged_config, write_csv

from dcsm_lightning.app.error_report import EXIT_USER_ERROR


def _predict(checkpoint, images, output, cwd, *extra):
    return run_cli(
        "predict", f"--ckpt_path={checkpoint}", f"--images={images}", f"--output_dir={output}",
        *extra, cwd=cwd,
    )  # fmt: skip


def test_data_options_beside_images(checkpoint, images, tmp_path):
    out = tmp_path / "out"
    done = _predict(
        checkpoint, images, out, tmp_path, "--data.init_args.batch_size=3", "--data.size=40"
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert len(list((out / "masks").glob("*.png"))) == len(list(images.glob("*.jpg")))


def test_zero_size_is_refused(checkpoint, images, tmp_path):
    done = _predict(checkpoint, images, tmp_path / "out", tmp_path, "--data.size=0")
    assert done.returncode == EXIT_USER_ERROR, done.stderr[-3000:]
    assert error_line(done.stderr) == "size must be >= 1, got 0"
    assert not (tmp_path / "out").exists()


def test_exif_orientation_is_honoured(checkpoint, images, tmp_path):
    photo = sorted(images.glob("*.jpg"))[0]
    with Image.open(photo) as image:
        stored = image.resize((64, 40))
    exif = Image.Exif()
    exif[0x0112] = 6  # displayed rotated by 90 degrees: 40 wide, 64 high
    stored.save(photo, exif=exif)
    out = tmp_path / "out"
    done = _predict(checkpoint, images, out, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    with Image.open(out / "masks" / f"{photo.stem}.png") as mask:
        assert mask.size == (40, 64)


def test_absolute_paths_in_the_csv(images, base_tree, tmp_path):
    rows = tag_rows(base_tree, sorted(p.stem for p in images.glob("*.jpg")))
    tags = write_csv(
        tmp_path / "tags.csv", [(str(images / f"{i}.jpg"), " ".join(n)) for i, n in rows.items()]
    )
    config = tagged_config(tmp_path, images, tags)
    done = run_cli("fit", "--config", str(config), "--trainer.fast_dev_run=1", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]


def test_absolute_path_outside_the_images(images, base_tree, tmp_path):
    rows = tag_rows(base_tree, sorted(p.stem for p in images.glob("*.jpg")))
    first = sorted(rows)[0]
    tags = write_csv(
        tmp_path / "tags.csv",
        [(str(tmp_path / f"{first}.jpg"), " ".join(rows[first]))]
        + [(i, " ".join(n)) for i, n in rows.items() if i != first],
    )
    done = run_cli("fit", "--config", str(tagged_config(tmp_path, images, tags)), cwd=tmp_path)
    assert done.returncode == EXIT_USER_ERROR, done.stderr[-3000:]
    assert error_line(done.stderr) == (
        f"1 of {len(rows)} rows of {tags} name no image under {images}: "
        f"{tmp_path / first}.jpg (line 2) (paths are relative to {images}, or absolute under it)"
    )


def test_folder_given_as_tag_file(images, tmp_path):
    folder = tmp_path / "tags.csv"
    folder.mkdir()
    done = run_cli("fit", "--config", str(tagged_config(tmp_path, images, folder)), cwd=tmp_path)
    assert done.returncode == EXIT_USER_ERROR, done.stderr[-3000:]
    assert error_line(done.stderr) == f"tag file {folder} is a folder; give the file itself"


def test_pseudo_labels_without_tags(checkpoint, images, tmp_path):
    done = run_cli(
        "pseudo-labels", f"--ckpt_path={checkpoint}", f"--images={images}",
        f"--output_dir={tmp_path / 'out'}", cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == EXIT_USER_ERROR, done.stderr[-3000:]
    assert error_line(done.stderr) == (
        "pseudo-labels needs data.tags: the image tags are its candidates"
    )
    assert not (tmp_path / "out").exists()


def test_compare_without_masks_is_refused_before_the_work(
    all_images, base_tree, checkpoint, tmp_path
):
    rows = tag_rows(base_tree, sorted(p.stem for p in all_images.glob("*.jpg")))
    tags = write_csv(tmp_path / "tags.csv", [(i, " ".join(n)) for i, n in rows.items()])
    done = run_cli(
        "compare", "--config", str(tagged_config(tmp_path, all_images, tags)),
        f"--ckpt_path={checkpoint}", f"--output_dir={tmp_path / 'out'}", cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == EXIT_USER_ERROR, done.stderr[-3000:]
    assert error_line(done.stderr) == (
        "compare needs masks to score the methods: give data.masks (a folder of <id>.png)"
    )
    assert "Validation" not in done.stdout + done.stderr  # refused before the pass
    assert not (tmp_path / "out").exists()


def test_images_with_masks_are_compared(images, base_tree, checkpoint, tmp_path):
    rows = tag_rows(base_tree, sorted(p.stem for p in images.glob("*.jpg")))
    tags = write_csv(tmp_path / "tags.csv", [(i, " ".join(n)) for i, n in rows.items()])
    config = tagged_config(tmp_path, images, tags, masks=str(base_tree / "SegmentationClass"))
    done = run_cli(
        "compare", "--config", str(config), f"--ckpt_path={checkpoint}",
        f"--output_dir={tmp_path / 'out'}", cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "out" / "comparison.csv").is_file()
