"""ResNet: torchvision key and numeric compatibility, freezing, truncation, the C4 res5 head."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

from rcnnzoo.layers import FrozenBatchNorm2d
from rcnnzoo.modeling.backbone import ResNet, make_res5_stage


def _randomize_frozen_bn(model: nn.Module) -> None:
    """Give every FrozenBN non-trivial statistics, so a mismatch in their use shows."""
    g = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, FrozenBatchNorm2d):
            n = m.weight.numel()
            m.weight.copy_(1 + 0.1 * torch.randn(n, generator=g))
            m.bias.copy_(0.1 * torch.randn(n, generator=g))
            m.running_mean.copy_(0.1 * torch.randn(n, generator=g))
            m.running_var.copy_(0.5 + torch.rand(n, generator=g))


def _tv_backbone_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v for k, v in model.state_dict().items() if not k.startswith("fc.")}


def test_resnet50_loads_torchvision_weights_and_matches_its_forward():
    torch.manual_seed(0)
    tv = torchvision.models.resnet50(weights=None, norm_layer=FrozenBatchNorm2d).eval()
    _randomize_frozen_bn(tv)
    ours = ResNet(depth=50, norm="FrozenBN", freeze_at=2).eval()
    plain_keys = {
        k for k in torchvision.models.resnet50(weights=None).state_dict() if "num_batches_tracked" not in k
    }
    assert set(ours.state_dict()) == {k for k in plain_keys if not k.startswith("fc.")}
    ours.load_state_dict(_tv_backbone_state(tv))  # strict

    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        out = ours(x)
        c = tv.maxpool(tv.relu(tv.bn1(tv.conv1(x))))
        expected = {}
        for i, name in enumerate(("res2", "res3", "res4", "res5")):
            c = getattr(tv, f"layer{i + 1}")(c)
            expected[name] = c
    for name in expected:
        assert torch.equal(out[name], expected[name]), name
    assert {n: s.channels for n, s in ours.output_shape().items()} == {
        "res2": 256,
        "res3": 512,
        "res4": 1024,
        "res5": 2048,
    }


def test_resnet18_channels_and_strides():
    shapes = ResNet(depth=18).output_shape()
    assert {n: (s.channels, s.stride) for n, s in shapes.items()} == {
        "res2": (64, 4),
        "res3": (128, 8),
        "res4": (256, 16),
        "res5": (512, 32),
    }


def _expected_frozen_prefixes(freeze_at: int) -> tuple[str, ...]:
    stem = ("conv1.", "bn1.") if freeze_at >= 1 else ()
    return stem + tuple(f"layer{i}." for i in range(1, freeze_at))


@pytest.mark.parametrize("freeze_at", range(6))
def test_freeze_at_freezes_exactly_the_stem_and_first_stages(freeze_at):
    model = ResNet(depth=18, norm="BN", freeze_at=freeze_at)
    prefixes = _expected_frozen_prefixes(freeze_at)
    for name, p in model.named_parameters():
        assert p.requires_grad != name.startswith(prefixes), name
    # Frozen BatchNorms become FrozenBN (no parameters, no running-stat updates); the rest still train.
    for name, m in model.named_modules():
        if isinstance(m, (nn.BatchNorm2d, FrozenBatchNorm2d)):
            assert isinstance(m, FrozenBatchNorm2d) == (name + ".").startswith(prefixes), name


def test_frozen_stages_keep_statistics_in_train_mode():
    model = ResNet(depth=18, norm="BN", freeze_at=2).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model(torch.randn(2, 3, 64, 64) * 3 + 1)
    after = model.state_dict()
    assert torch.equal(before["layer1.0.bn1.running_mean"], after["layer1.0.bn1.running_mean"])
    assert torch.equal(before["bn1.running_var"], after["bn1.running_var"])
    assert not torch.equal(before["layer2.0.bn1.running_mean"], after["layer2.0.bn1.running_mean"])


def test_c4_backbone_stops_at_res4():
    model = ResNet(depth=18, out_features=("res4",))
    assert not hasattr(model, "layer4")
    assert not any(k.startswith("layer4.") for k in model.state_dict())
    out = model(torch.randn(1, 3, 64, 64))
    assert list(out) == ["res4"] and out["res4"].shape == (1, 256, 4, 4)


def test_res5_stage_is_torchvision_layer4():
    tv = torchvision.models.resnet18(weights=None, norm_layer=FrozenBatchNorm2d).eval()
    _randomize_frozen_bn(tv)
    res5, out_channels = make_res5_stage(depth=18)
    layer4 = {k[len("layer4.") :]: v for k, v in tv.state_dict().items() if k.startswith("layer4.")}
    res5.load_state_dict(layer4)  # strict: same keys, same shapes
    x = torch.randn(3, 256, 14, 14)  # RoIs pooled 14x14 from res4
    with torch.no_grad():
        y = res5.eval()(x)
        assert torch.equal(y, tv.layer4(x))
    assert out_channels == 512 and y.shape == (3, 512, 7, 7)
    assert make_res5_stage(depth=50)[1] == 2048


def test_stride_in_1x1_moves_the_stride_only():
    default = ResNet(depth=50, out_features=("res3",))
    msra = ResNet(depth=50, out_features=("res3",), stride_in_1x1=True)
    assert default.layer2[0].conv2.stride == (2, 2) and default.layer2[0].conv1.stride == (1, 1)
    assert msra.layer2[0].conv1.stride == (2, 2) and msra.layer2[0].conv2.stride == (1, 1)
    assert msra(torch.randn(1, 3, 64, 64))["res3"].shape == (1, 512, 8, 8)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(depth=42), "depth must be one of"),
        (dict(out_features=("res6",)), "Unknown ResNet out_features"),
        (dict(norm=""), "needs a norm"),
        (dict(norm="LN"), "Unknown norm"),
        (dict(freeze_at=6), "freeze_at must be in 0..5"),
    ],
)
def test_bad_arguments_raise_with_a_message(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ResNet(**{"depth": 18, **kwargs})
