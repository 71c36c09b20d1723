"""Registry, entry-point plugins and YAML (jsonargparse) construction."""

from __future__ import annotations

import sys
import textwrap

import pytest
import torch
from jsonargparse import ArgumentParser

from dcsm_lightning.models.backbones import create_backbone
from dcsm_lightning.saliency import (
    CAM,
    DCSM,
    GradCAM,
    LayerGradient,
    SaliencyStrategy,
    Simonyan,
    create_saliency,
    list_saliency,
    register_saliency,
)
from dcsm_lightning.saliency import registry as registry_module
from dcsm_lightning.saliency.registry import clear_discovery_cache

BUILT_IN = {
    "cam": CAM,
    "dcsm": DCSM,
    "gradcam": GradCAM,
    "layer_gradient": LayerGradient,
    "simonyan": Simonyan,
}


def test_built_ins_are_listed_and_created():
    assert set(BUILT_IN) <= set(list_saliency())
    assert list_saliency("*grad*") == ["gradcam", "layer_gradient"]
    for name, cls in BUILT_IN.items():
        assert type(create_saliency(name)) is cls


def test_create_spells_the_paper_defaults():
    s = create_saliency(
        "dcsm", layers=["conv3_1"], at=None, backprop="guided", scales=(0.8, 1.0, 1.2),
        alpha=3.0, subtract=True, normalize="max", variant="paper", seed="sum",
    )  # fmt: skip
    d = DCSM()
    assert (s.at, s.backprop, s.scales, s.alpha, s.subtract, s.normalize, s.variant, s.seed) == (
        d.at, d.backprop, d.scales, d.alpha, d.subtract, d.normalize, d.variant, d.seed,
    )  # fmt: skip
    assert d.layers is None and d.at is None  # the model's own: conv3_1 ... conv5_3 on VGG
    vgg = create_backbone("vgg_small", 3)
    assert d.layer_choice(vgg).paths == tuple(f"conv{b}_{j}" for b in (3, 4, 5) for j in (1, 2, 3))
    assert d.layer_choice(vgg).at == "input"


def test_unknown_name_lists_known_ones():
    with pytest.raises(ValueError, match="Unknown saliency strategy 'dscm'.*dcsm.*simonyan"):
        create_saliency("dscm")


def test_name_clash_warns():
    @register_saliency("_test_clash")
    class First(Simonyan):
        pass

    try:
        with pytest.warns(UserWarning, match="registered twice"):

            @register_saliency("_test_clash")
            class Second(Simonyan):
                pass

        assert type(create_saliency("_test_clash")) is Second
        assert Second().name == "_test_clash"
    finally:
        registry_module._REGISTRY.pop("_test_clash", None)


PLUGIN = '''
from dcsm_lightning.saliency import SaliencyStrategy, normalize_by_max, upsample_maps


class EdgeSaliency(SaliencyStrategy):
    """Image-gradient magnitude, the same for every candidate (a toy third-party strategy)."""

    def __init__(self, *, gain: float = 1.0, **kwargs) -> None:
        super().__init__(**kwargs)
        self.gain = gain

    def scale_maps(self, model, image, slots, size):
        edge = (image[..., 1:, :] - image[..., :-1, :]).abs().amax(1)
        edge = upsample_maps(edge, size)[:, None] * self.gain
        return normalize_by_max(edge.expand(-1, slots.num_slots, -1, -1))
'''


@pytest.fixture
def plugin_on_path(tmp_path, monkeypatch):
    """A separately 'installed' package: a module plus a dist-info with an entry point."""
    (tmp_path / "edge_plugin.py").write_text(PLUGIN)
    dist = tmp_path / "edge_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: edge-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(
        textwrap.dedent(
            """\
            [dcsm_lightning.saliency]
            edge = edge_plugin:EdgeSaliency
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    clear_discovery_cache()
    yield
    clear_discovery_cache()
    sys.modules.pop("edge_plugin", None)


def test_entry_point_plugin_is_found(plugin_on_path, model, image, candidates):
    assert "edge" in list_saliency()
    strategy = create_saliency("edge", gain=2.0)
    assert type(strategy).__name__ == "EdgeSaliency" and strategy.name == "edge"
    maps = strategy(model, image, candidates)
    assert maps.shape == (2, 4, 24, 24) and torch.equal(maps[0, 0], maps[0, 2])
    assert torch.equal(maps[~candidates], torch.zeros_like(maps[~candidates]))


def test_plugin_selected_from_yaml(plugin_on_path):
    parser = ArgumentParser()
    parser.add_argument("--saliency", type=SaliencyStrategy)
    config = parser.parse_string(
        "saliency:\n  class_path: edge_plugin.EdgeSaliency\n"
        "  init_args:\n    gain: 3.0\n    name: edges\n"
    )
    strategy = parser.instantiate_classes(config).saliency
    assert (
        type(strategy).__name__ == "EdgeSaliency"
        and strategy.gain == 3.0
        and strategy.name == "edges"
    )


def test_built_ins_from_yaml():
    parser = ArgumentParser()
    parser.add_argument("--saliency", type=list[SaliencyStrategy])
    config = parser.parse_string(
        textwrap.dedent(
            """\
            saliency:
              - class_path: dcsm_lightning.saliency.DCSM
                init_args:
                  name: dcsm_bp
                  backprop: bp
                  layers: [conv3_2, conv4_2, conv5_2]
                  scales: [1.0]
                  batched_backward: true
              - class_path: dcsm_lightning.saliency.Simonyan
              - class_path: dcsm_lightning.saliency.LayerGradient
              - class_path: dcsm_lightning.saliency.GradCAM
              - class_path: dcsm_lightning.saliency.CAM
            """
        )
    )
    dcsm, *others = parser.instantiate_classes(config).saliency
    assert isinstance(dcsm, DCSM) and dcsm.name == "dcsm_bp" and dcsm.backprop == "bp"
    assert dcsm.layers == ("conv3_2", "conv4_2", "conv5_2") and dcsm.scales == (1.0,)
    assert dcsm.batched_backward is True
    assert [type(s) for s in others] == [Simonyan, LayerGradient, GradCAM, CAM]
