"""The README's plugin example: register a backbone, name it in a config file, instantiate it."""

from __future__ import annotations

import textwrap

import torch
from torch import nn

from rcnnzoo.config import LazyConfig, instantiate
from rcnnzoo.layers import ShapeSpec
from rcnnzoo.modeling.backbone import BACKBONE_REGISTRY, Backbone


# force=True: re-importing this test module (reruns, other import modes) replaces the entry.
@BACKBONE_REGISTRY.register(force=True)
class TinyPluginNet(Backbone):
    """Two conv layers; stride 4."""

    def __init__(self, *, in_channels: int = 3, width: int = 8) -> None:
        super().__init__()
        self.width = width
        self.conv1 = nn.Conv2d(in_channels, width, 3, stride=2, padding=1)
        self.conv2 = nn.Conv2d(width, width, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"c2": self.conv2(torch.relu(self.conv1(x)))}

    def output_shape(self) -> dict[str, ShapeSpec]:
        return {"c2": ShapeSpec(channels=self.width, stride=4)}


def test_registered_backbone_named_in_a_config_file(tmp_path):
    cfg_file = tmp_path / "tiny.py"
    cfg_file.write_text(
        textwrap.dedent(
            """
            from rcnnzoo.config import L

            model = L("TinyPluginNet")(width=16)
            qualified = L("BACKBONE:TinyPluginNet")(in_channels=1)
            """
        )
    )
    cfg = LazyConfig.load(cfg_file)
    model = instantiate(cfg.model)
    assert isinstance(model, TinyPluginNet) and model.width == 16
    assert model.output_shape() == {"c2": ShapeSpec(channels=16, stride=4)}
    assert model(torch.zeros(1, 3, 32, 32))["c2"].shape == (1, 16, 8, 8)
    assert instantiate(cfg.qualified).conv1.in_channels == 1


def test_plugin_survives_overrides_and_yaml_round_trip(tmp_path):
    cfg_file = tmp_path / "tiny.py"
    cfg_file.write_text('from rcnnzoo.config import L\nmodel = L("TinyPluginNet")()\n')
    cfg = LazyConfig.apply_overrides(LazyConfig.load(cfg_file), ["model.width=4"])
    LazyConfig.save(cfg, tmp_path / "tiny.yaml")
    model = instantiate(LazyConfig.load(tmp_path / "tiny.yaml").model)
    assert isinstance(model, TinyPluginNet) and model.width == 4
