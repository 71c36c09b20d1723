"""benchmarks/dead_channels.py: the fraction of never-firing ReLU channels,
by hand and end to end."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from collections import OrderedDict
from pathlib import Path

import torch
from torch import nn

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "dead_channels.py"


_SPEC = importlib.util.spec_from_file_location("dead_channels", SCRIPT)
dead_channels = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(dead_channels)


def test_counts_the_channels_that_never_fire():
    conv = nn.Conv2d(3, 4, 1)
    with torch.no_grad():
        conv.weight.zero_()
        conv.bias.copy_(torch.tensor([-1.0, 1.0, -1.0, 0.0]))  # 0, 2 (and 3: never > 0) dead
        conv.weight[2, 0] = 1.0  # channel 2 fires where the first input channel exceeds 1
    model = nn.Sequential(OrderedDict(conv=conv, relu1=nn.ReLU()))
    images = torch.zeros(2, 3, 4, 4)
    assert dead_channels.dead_fractions(model, [images]) == {"relu1": 0.75}
    images[1, 0, 2, 2] = 3.0  # one pixel of one image wakes channel 2
    assert dead_channels.dead_fractions(model, [images]) == {"relu1": 0.5}
    assert not model.relu1._forward_hooks  # the hooks are removed


def test_runs_on_a_checkpoint(tmp_path):
    from dcsm_lightning.models import MultiLabelFCN

    model = MultiLabelFCN(num_classes=6, backbone="vgg_small")
    ckpt = tmp_path / "model.ckpt"
    torch.save(
        {"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams),
         "pytorch-lightning_version": "2.6.0"},
        ckpt,
    )  # fmt: skip
    args = [sys.executable, str(SCRIPT), str(ckpt), "--num_val", "4"]
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    pairs = dict(pair.split(":") for pair in out.split())
    assert list(pairs)[0] == "relu1_1" and list(pairs)[-2:] == ["relu6", "relu7"]
    assert all(0.0 <= float(v) <= 1.0 for v in pairs.values())
