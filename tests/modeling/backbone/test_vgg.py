"""VGG16: torchvision keys and numerics, stride 16 conv5, freezing by conv count, the fc6/fc7 head."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn
from torchvision.models.vgg import cfgs, make_layers

from rcnnzoo.modeling.backbone import VGG16, vgg16_fc67


def _features_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v for k, v in model.state_dict().items() if k.startswith("features.")}


def _torchvision_vgg16(**kwargs) -> nn.Module:
    """Keys and shapes only: on the meta device its 138M parameters cost nothing."""
    with torch.device("meta"):
        return torchvision.models.vgg16(weights=None, **kwargs)


def test_vgg16_is_torchvision_features_without_the_last_pool():
    torch.manual_seed(0)
    tv_keys = set(_features_state(_torchvision_vgg16()))
    ours = VGG16().eval()
    assert set(ours.state_dict()) == tv_keys
    # torchvision's vgg16().features, built by the same function, with real values
    tv_features = make_layers(cfgs["D"]).eval()
    assert len(ours.features) == 30 and isinstance(tv_features[30], nn.MaxPool2d)
    ours.load_state_dict({f"features.{k}": v for k, v in tv_features.state_dict().items()})
    x = torch.randn(1, 3, 64, 80)
    with torch.no_grad():
        out = ours(x)["conv5"]
        assert torch.equal(out, tv_features[:30](x))
    assert out.shape == (1, 512, 4, 5)  # stride 16
    assert ours.output_shape()["conv5"].stride == 16 and ours.output_shape()["conv5"].channels == 512


def test_vgg16_bn_layout_matches_torchvision_vgg16_bn():
    with torch.device("meta"):
        tv_keys = {
            k for k in torchvision.models.vgg16_bn(weights=None).state_dict() if k.startswith("features.")
        }
    ours = VGG16(norm="BN", freeze_at=0)
    assert set(ours.state_dict()) == tv_keys  # the last pool (features.43) has no parameters


@pytest.mark.parametrize("freeze_at, frozen_convs", [(0, []), (4, [0, 2, 5, 7]), (13, "all")])
def test_freeze_at_counts_convs_from_the_input(freeze_at, frozen_convs):
    model = VGG16(freeze_at=freeze_at)
    convs = [i for i, m in enumerate(model.features) if isinstance(m, nn.Conv2d)]
    expected = convs if frozen_convs == "all" else frozen_convs
    for i in convs:
        conv = model.features[i]
        assert conv.weight.requires_grad == conv.bias.requires_grad == (i not in expected), i


def test_intermediate_outputs_and_truncation():
    model = VGG16(out_features=("conv3", "conv4"))
    assert {n: (s.channels, s.stride) for n, s in model.output_shape().items()} == {
        "conv3": (256, 4),
        "conv4": (512, 8),
    }
    assert len(model.features) == 23  # nothing after relu4_3 is built
    out = model(torch.randn(1, 3, 32, 32))
    assert out["conv3"].shape == (1, 256, 8, 8) and out["conv4"].shape == (1, 512, 4, 4)


def test_fc67_takes_torchvision_classifier_weights():
    tv = _torchvision_vgg16()
    mapped = {
        k[len("classifier.") :]: torch.randn(v.shape)
        for k, v in tv.state_dict().items()
        if k.startswith("classifier.") and not k.startswith("classifier.6.")
    }
    head = vgg16_fc67().eval()
    head.load_state_dict(mapped)  # strict: fc6 = "0", fc7 = "3", same shapes
    x = torch.randn(2, 512, 7, 7)
    fc6 = torch.relu(x.flatten(1) @ mapped["0.weight"].T + mapped["0.bias"])
    fc7 = torch.relu(fc6 @ mapped["3.weight"].T + mapped["3.bias"])
    with torch.no_grad():
        torch.testing.assert_close(head(x), fc7)
    assert isinstance(head[2], nn.Identity) and isinstance(vgg16_fc67(dropout=0.5)[2], nn.Dropout)
