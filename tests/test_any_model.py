"""Issue 19's acceptance: a user's ResNet-18 score-map project (average pooling, dict batches
``{img, y, seg, name}``) runs validate, compare and predict with ``[dcsm, gradcam, simonyan]``
by name and no layer argument; 2 DDP processes on 7 images equal 1 process, without warnings.
The project is ``tests/any_model_project.py``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from any_model_project import CLASSES, Squares, run

HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def one_process(tmp_path_factory):
    out = tmp_path_factory.mktemp("one")
    model, seg = run(out, devices=1)
    return out, model, seg


def test_resnet_project_by_name_validates_compares_and_predicts(one_process):
    out, model, seg = one_process
    methods = ["dcsm", "gradcam", "simonyan"]
    assert sorted(json.loads((out / "results.json").read_text())) == methods
    table = (out / "report" / "comparison.csv").read_text().splitlines()
    assert [row.split(",")[0] for row in table[1:]] == methods
    last = seg.last_output  # the last predict batch: the maps of every candidate are non-zero
    for name in methods:
        assert last.maps[name][last.candidates].flatten(1).amax(1).gt(0).all(), name
    # Issue 19: the scores written are the model's own (average pooling), not max-pooled ones.
    # Before the fix they were sigmoid(max): 0.1 - 0.5 apart here.
    data = Squares(7)
    with torch.no_grad():
        model.eval()
        images = torch.stack([data[i]["img"] for i in range(7)])
        own = torch.sigmoid(model(images).mean(dim=(2, 3)))
    for i in range(7):
        record = json.loads((out / "pred" / "scores" / f"img_{i}.json").read_text())
        written = torch.tensor([record["scores"][c] for c in CLASSES])
        assert torch.allclose(written, own[i], atol=1e-6), (i, written, own[i])


def test_two_ddp_processes_on_seven_images_equal_one_without_warnings(one_process, tmp_path):
    out, _, _ = one_process
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(
        [str(HERE.parent / "src"), str(HERE), os.environ.get("PYTHONPATH", "")])}  # fmt: skip
    env.pop("MASTER_PORT", None)
    result = subprocess.run(
        [sys.executable, str(HERE / "any_model_project.py"), "--out", str(tmp_path),
         "--devices", "2"],
        env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    two = json.loads((tmp_path / "results.json").read_text())
    one = json.loads((out / "results.json").read_text())
    assert two.keys() == one.keys()
    for method in one:  # before the fix: the repeated image counted twice (off by 1e-3 here)
        assert abs(two[method] - one[method]) < 1e-6, (method, two[method], one[method])
    assert "sync_dist" not in result.stderr + result.stdout
    assert len(list((tmp_path / "pred" / "scores").glob("*.json"))) == 7
