"""Kill, stop and race ``predict``: complete files only, no orphans, reruns finish the set
byte for byte like an uninterrupted run."""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import yaml
from robust_helpers import cli_command, cli_env, leftover_temp_files, robust_config

from dcsm_lightning.files import _HOST

HERE = Path(__file__).resolve().parent
THROTTLE = {"class_path": "throttle.Throttle", "init_args": {"seconds": 1.5}}


@pytest.fixture(scope="module")
def setup(base_tree, checkpoint, tmp_path_factory):
    """Configs (plain, and throttled with 2 CRF workers), and the reference predictions."""
    folder = tmp_path_factory.mktemp("interrupts")
    plain = robust_config(base_tree, folder / "ckpt", crf_workers=2)
    plain["data"]["init_args"]["batch_size"] = 1
    slow = yaml.safe_load(yaml.safe_dump(plain))
    slow["trainer"]["callbacks"].append(THROTTLE)
    (folder / "plain.yaml").write_text(yaml.safe_dump(plain))
    (folder / "slow.yaml").write_text(yaml.safe_dump(slow))
    reference = folder / "reference"
    assert _predict(folder, "plain.yaml", checkpoint, reference).wait(300) == 0
    return folder, checkpoint, _contents(reference)


def _predict(folder: Path, config: str, checkpoint: Path, output: Path) -> subprocess.Popen:
    env = cli_env()
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [env.get("PYTHONPATH"), str(HERE)]))
    args = ["predict", "--config", config, f"--ckpt_path={checkpoint}", f"--output_dir={output}"]
    return subprocess.Popen(
        cli_command(*args, f"--trainer.default_root_dir={tempfile.mkdtemp(dir=folder)}"),
        cwd=folder,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def _contents(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not p.name.startswith(".")
    }


def _wait_for_scores(folder: Path, process: subprocess.Popen, timeout: float = 120) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if list((folder / "scores").glob("*.json")):
            return
        assert process.poll() is None, process.stderr.read()[-3000:]
        time.sleep(0.05)
    raise AssertionError("no image was written in time")


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _complete_images(output: Path, reference: dict[str, bytes]) -> None:
    """Every file present equals the reference; an image with scores has all its files."""
    written = _contents(output)
    for name, data in written.items():
        assert reference[name] == data, name
    for name in written:
        if name.startswith("scores/"):
            stem = Path(name).stem
            assert {f"masks/{stem}.png", f"overlays/{stem}.png"} <= set(written)


def test_sigterm_stops_predict_after_the_current_image_and_a_rerun_finishes(setup):
    folder, checkpoint, reference = setup
    output = folder / "sigterm"
    process = _predict(folder, "slow.yaml", checkpoint, output)
    _wait_for_scores(output, process)
    process.send_signal(signal.SIGTERM)
    started = time.monotonic()
    assert process.wait(60) == 128 + signal.SIGTERM
    assert time.monotonic() - started < 15  # promptly, not after the whole set
    assert "stopped on SIGTERM" in process.stderr.read()
    assert not leftover_temp_files(output)
    _complete_images(output, reference)
    assert len(list((output / "scores").glob("*.json"))) < 5

    assert _predict(folder, "plain.yaml", checkpoint, output).wait(300) == 0
    assert _contents(output) == reference


def test_sigkill_leaves_no_orphan_workers_and_a_rerun_finishes(setup):
    folder, checkpoint, reference = setup
    output = folder / "sigkill"
    process = _predict(folder, "slow.yaml", checkpoint, output)
    _wait_for_scores(output, process)
    workers = _children(process.pid)
    assert len(workers) >= 2, workers  # the DenseCRF pool
    process.kill()
    process.wait(30)
    end = time.monotonic() + 10
    while any(_running(w) for w in workers) and time.monotonic() < end:
        time.sleep(0.1)
    assert not [w for w in workers if _running(w)], "DenseCRF workers outlived their parent"
    _complete_images(output, reference)
    # what a write cut short by the kill leaves, and a temp file of a run on another host
    killed = output / "masks" / f".a.{_HOST}-{process.pid}-0123abcd.tmp.png"
    killed.write_bytes(b"")
    other_host = output / "masks" / f".b.{_HOST}x-{process.pid}-0123abcd.tmp.png"
    other_host.write_bytes(b"")

    assert _predict(folder, "plain.yaml", checkpoint, output).wait(300) == 0
    assert leftover_temp_files(output) == [other_host]
    other_host.unlink()
    assert _contents(output) == reference


def test_two_predict_runs_into_one_folder_at_once(setup):
    folder, checkpoint, reference = setup
    output = folder / "shared"
    first = _predict(folder, "plain.yaml", checkpoint, output)
    second = _predict(folder, "plain.yaml", checkpoint, output)
    assert first.wait(300) == 0, first.stderr.read()[-3000:]
    assert second.wait(300) == 0, second.stderr.read()[-3000:]
    assert not leftover_temp_files(output)
    assert _contents(output) == reference
