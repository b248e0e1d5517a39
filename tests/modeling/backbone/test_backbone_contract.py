"""Every registered backbone keeps the Backbone contract: outputs agree with output_shape()."""

from __future__ import annotations

import math

import pytest
import torch

from rcnnzoo.modeling.backbone import BACKBONE_REGISTRY, FPN, ResNet, TinyNet

# Small instances for backbones whose defaults are heavy or that need arguments.
_FACTORIES = {
    "ResNet": lambda: ResNet(depth=18, norm="BN", freeze_at=0),
    "FPN": lambda: FPN(
        bottom_up=TinyNet(widths=(8, 8, 16, 16)), in_features=["c2", "c3", "c4", "c5"], out_channels=16
    ),
}


def _build(name: str) -> torch.nn.Module:
    if name in _FACTORIES:
        return _FACTORIES[name]()
    try:
        return BACKBONE_REGISTRY.get(name)()
    except TypeError as e:  # a plugin registered by another test that needs arguments
        pytest.skip(f"{name} has no default construction: {e}")


def test_builtin_backbones_are_registered():
    assert {"ResNet", "FPN", "VGG16", "MobileNetV3", "TinyNet"} <= set(BACKBONE_REGISTRY.names())


@pytest.mark.parametrize("name", BACKBONE_REGISTRY.names())
def test_outputs_match_output_shape(name):
    torch.manual_seed(0)
    model = _build(name).train()
    shapes = model.output_shape()
    h, w = 64, 96  # multiples of 32: every stride divides them
    outputs = model(torch.randn(2, 3, h, w))
    assert list(outputs) == list(shapes), "forward() and output_shape() disagree on names or order"
    for key, feature in outputs.items():
        spec = shapes[key]
        expected = (2, spec.channels, math.ceil(h / spec.stride), math.ceil(w / spec.stride))
        assert tuple(feature.shape) == expected, key
    assert isinstance(model.size_divisibility, int) and model.size_divisibility >= 0


@pytest.mark.parametrize("name", BACKBONE_REGISTRY.names())
def test_gradients_reach_trainable_parameters(name):
    model = _build(name).train()
    outputs = model(torch.randn(2, 3, 64, 64))
    sum(o.mean() for o in outputs.values()).backward()
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    assert trainable, f"{name} trains nothing with its defaults"
    assert all(p.grad is not None for _, p in trainable[-3:]), "the last trainable layers get no gradient"
