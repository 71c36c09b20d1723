"""Where outputs go: read-only, full, size-limited, a file in the way, existing files, a bad
``--method``. One line naming the path, nothing half-written, no temporary files left."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import resource
import subprocess

import numpy as np
import pytest
from PIL import Image
from robust_helpers import error_line, leftover_temp_files, run_cli

from dcsm_lightning.app.error_report import EXIT_USER_ERROR
from dcsm_lightning.files import remove_stale_temp_files

_PR_CAPBSET_DROP = 24


def _predict(run, config, checkpoint, output, *extra):
    return run(
        "predict", "--config", str(config), f"--ckpt_path={checkpoint}", f"--output_dir={output}",
        *extra,
    )  # fmt: skip


def test_output_folder_that_is_a_file(run, config, checkpoint, tmp_path):
    (tmp_path / "out").write_text("a file")
    code, err = _predict(run, config, checkpoint, tmp_path / "out")
    assert code == EXIT_USER_ERROR
    assert error_line(err) == f"output folder {tmp_path / 'out'} is a file, not a folder"
    assert (tmp_path / "out").read_text() == "a file"


def test_output_folder_below_a_file(run, config, checkpoint, tmp_path):
    (tmp_path / "out").write_text("a file")
    code, err = _predict(run, config, checkpoint, tmp_path / "out" / "masks")
    assert code == EXIT_USER_ERROR
    assert error_line(err).startswith(f"output folder {tmp_path / 'out' / 'masks'} is not writable")


def test_unknown_method(run, config, checkpoint, tmp_path):
    code, err = _predict(run, config, checkpoint, tmp_path / "out", "--method=nope")
    assert code == EXIT_USER_ERROR
    assert error_line(err).startswith("method 'nope' is not among the segmentation's masks")


def test_unknown_layer(run, config, tmp_path):
    code, err = run(
        "validate", "--config", str(config),
        "--model.segmentation.saliency=dcsm_lightning.saliency.LayerGradient",
        "--model.segmentation.saliency.init_args.layers=[conv9_9]",
    )  # fmt: skip
    assert code == EXIT_USER_ERROR
    assert "conv9_9" in error_line(err)


def test_existing_files_are_kept_and_overwrite_rewrites_them(run, config, checkpoint, tmp_path):
    output = tmp_path / "out"
    assert _predict(run, config, checkpoint, output)[0] == 0
    mask = next((output / "masks").glob("*.png"))
    mask.write_bytes(b"the user's own file")
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in output.rglob("*") if p.is_file()}
    assert _predict(run, config, checkpoint, output)[0] == 0
    after = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in output.rglob("*") if p.is_file()}
    assert after == before
    assert _predict(run, config, checkpoint, output, "--overwrite=true")[0] == 0
    assert Image.open(mask).mode == "P"


def test_synth_into_a_non_empty_folder_and_onto_a_file(run, tmp_path):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "mine.txt").write_text("keep me")
    code, err = run("synth", "--out", str(tmp_path / "full"), "--num_train=1", "--num_val=1")
    assert code == EXIT_USER_ERROR
    assert error_line(err).startswith(f"export folder {tmp_path / 'full'} is not empty")
    assert sorted(os.listdir(tmp_path / "full")) == ["mine.txt"]
    code, err = run("synth", "--out", str(tmp_path / "full" / "mine.txt"))
    assert code == EXIT_USER_ERROR
    assert (
        error_line(err) == f"export folder {tmp_path / 'full' / 'mine.txt'} is a file, not a folder"
    )


def test_stale_temp_files_are_removed_but_live_and_foreign_ones_kept(tmp_path):
    from dcsm_lightning.files import _HOST

    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = tmp_path / "masks" / f".a.{_HOST}-{dead.pid}-0123abcd.tmp.png"
    live = tmp_path / "masks" / f".b.{_HOST}-{os.getpid()}-0123abcd.tmp.png"
    foreign = tmp_path / f".c.{_HOST}x-{dead.pid}-0123abcd.tmp.json"
    for path in (stale, live, foreign):
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(b"")
    assert remove_stale_temp_files(tmp_path) == 1
    assert leftover_temp_files(tmp_path) == sorted([live, foreign])


def _drop_file_capabilities() -> None:
    """Run as root without the capabilities that bypass file permissions (CAP_DAC_OVERRIDE,
    CAP_DAC_READ_SEARCH, CAP_FOWNER), as an ordinary user is. (The interpreter of this venv is
    not runnable by 'nobody' here, so the test drops capabilities rather than the uid.)"""
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    for capability in (1, 2, 3):
        if libc.prctl(_PR_CAPBSET_DROP, capability, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP) failed")


def test_read_only_output_folder_without_root_privileges(config, checkpoint, tmp_path):
    output = tmp_path / "readonly"
    output.mkdir()
    output.chmod(0o555)
    result = run_cli(
        "predict", "--config", str(config), f"--ckpt_path={checkpoint}", f"--output_dir={output}",
        f"--trainer.default_root_dir={tmp_path}", cwd=tmp_path, preexec_fn=_drop_file_capabilities,
    )  # fmt: skip
    assert result.returncode == EXIT_USER_ERROR, result.stderr[-3000:]
    assert error_line(result.stderr) == f"output folder {output} is not writable: Permission denied"
    assert "hint: choose a folder you can write to" in result.stderr
    assert os.listdir(output) == []


def test_file_size_limit(checkpoint, tmp_path, config, tree):
    # one big noisy image: its overlay PNG is far over the limit, config.yaml is not
    image = (
        tree / "JPEGImages" / f"{(tree / 'ImageSets/Segmentation/val.txt').read_text().split()[0]}"
    )
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (48, 48, 3), dtype=np.uint8)).resize((256, 256)).save(
        f"{image}.png"
    )
    os.unlink(f"{image}.jpg")
    mask = tree / "SegmentationClass" / f"{image.name}.png"
    Image.open(mask).resize((256, 256), Image.NEAREST).save(mask)
    limit = 40_000

    def limit_file_size() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    output = tmp_path / "out"
    result = run_cli(
        "predict", "--config", str(config), f"--ckpt_path={checkpoint}", f"--output_dir={output}",
        f"--trainer.default_root_dir={tmp_path}", cwd=tmp_path, preexec_fn=limit_file_size,
    )  # fmt: skip
    assert result.returncode == EXIT_USER_ERROR, result.stderr[-3000:]
    line = error_line(result.stderr)
    assert line.startswith(f"cannot write {output}/") and line.endswith(": File too large")
    assert "ulimit -f" in result.stderr
    assert not leftover_temp_files(output)


@pytest.fixture
def small_disk(tmp_path):
    """A 32 KiB tmpfs (we run as root); unmounted afterwards."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=32k", "tmpfs", str(mount)])
    if done.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root and CAP_SYS_ADMIN)")
    yield mount
    subprocess.run(["umount", str(mount)], check=True)


def test_disk_full(run, config, checkpoint, small_disk):
    output = small_disk / "out"
    code, err = _predict(run, config, checkpoint, output)
    assert code == EXIT_USER_ERROR
    line = error_line(err)
    assert line.startswith(f"cannot write {output}/") and line.endswith("No space left on device")
    assert "free some space" in err
    assert not leftover_temp_files(output)
    for png in output.rglob("*.png"):
        Image.open(png).load()  # every file left is complete
