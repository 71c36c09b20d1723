"""Registry names wherever a strategy is configured: YAML lists, the command line, class_path."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import yaml
from lightning.pytorch.cli import LightningArgumentParser

from dcsm_lightning.app.cli import main
from dcsm_lightning.models import MultiLabelFCN
from dcsm_lightning.saliency import DCSM, GradCAM, Simonyan, as_saliency

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def _model(saliency_yaml: str) -> MultiLabelFCN:
    """A MultiLabelFCN built by LightningCLI's parser from YAML with this ``saliency:`` value."""
    parser = LightningArgumentParser()
    parser.add_lightning_class_args(MultiLabelFCN, "model", subclass_mode=True)
    head = "model:\n  class_path: MultiLabelFCN\n  init_args:\n    backbone: vgg_small\n"
    head += "    num_classes: 3\n    segmentation:\n"
    head += "      class_path: dcsm_lightning.SaliencySegmentation\n      init_args:\n"
    body = textwrap.indent(textwrap.dedent(saliency_yaml), "        ")
    config = parser.parse_string(head + body)
    return parser.instantiate(config).model


def test_names_in_a_yaml_list():
    model = _model("saliency: [dcsm, simonyan]")
    strategies = model.segmentation.strategies
    assert [type(s) for s in strategies] == [DCSM, Simonyan]


def test_class_path_by_registry_name_and_by_class_name():
    model = _model(
        """\
        saliency:
          - class_path: gradcam
            init_args: {layer: relu4_3, name: gc}
          - class_path: DCSM
            init_args: {alpha: 5, engine: captum}
          - class_path: captum
            init_args: {method: IntegratedGradients, attribute_args: {n_steps: 8}}
        """
    )
    gradcam, dcsm, ig = model.segmentation.strategies
    assert isinstance(gradcam, GradCAM) and (gradcam.layer, gradcam.name) == ("relu4_3", "gc")
    assert isinstance(dcsm, DCSM) and (dcsm.alpha, dcsm.engine) == (5.0, "captum")
    assert ig.method == "IntegratedGradients" and ig.attribute_args == {"n_steps": 8}


def test_name_on_the_command_line(capsys):
    with pytest.raises(SystemExit):
        main(
            [
                "validate",
                f"--config={CONFIGS / 'synthetic.yaml'}",
                "--model.segmentation.saliency=dcsm",
                "--print_config",
            ]
        )
    segmentation = yaml.safe_load(capsys.readouterr().out)["model"]["init_args"]["segmentation"]
    assert segmentation["init_args"]["saliency"] == "dcsm"


def test_unknown_name_or_option_is_one_clear_error():
    with pytest.raises(ValueError, match="Unknown saliency strategy 'dscm'.*dcsm"):
        as_saliency({"class_path": "dscm"})
    with pytest.raises(ValueError, match="'gradcam' has no option 'layers'"):
        as_saliency({"class_path": "gradcam", "init_args": {"layers": ["x"]}})
    with pytest.raises(ValueError, match="registered name"):
        as_saliency(3)
