"""torchvision ImageNet classifiers -> rcnnzoo backbones: same keys, same features, bit for bit.

Each torchvision model gets random weights and random BN statistics (so that a BN whose
statistics went to the wrong layer shows), its state dict goes through the converter into the
rcnnzoo module, and both run the same input. Against torchvision's model with its BN frozen the
same way (rcnnzoo fine-tunes from ImageNet with FrozenBN) the features are equal exactly; against
its plain eval-mode BatchNorm, up to rounding.
"""

from __future__ import annotations

import functools

import pytest
import torch
import torchvision
from torch import nn

from rcnnzoo.config import instantiate
from rcnnzoo.layers import FrozenBatchNorm2d
from rcnnzoo.model_zoo import get_config
from rcnnzoo.model_zoo.converters import (
    TORCHVISION_IMAGENET_ARCHS,
    ConversionError,
    build_imagenet_backbone,
    convention_mismatches,
    convert_torchvision_backbone,
    place_backbone_weights,
    torchvision_backbone_weights,
)
from rcnnzoo.modeling.backbone import FPN, MobileNetV3, ResNet


def _torchvision(arch: str, seed: int = 0) -> nn.Module:
    """torchvision's ``arch`` (random weights), BN statistics and affine randomised, in eval mode."""
    torch.manual_seed(seed)
    model = getattr(torchvision.models, arch)(weights=None)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.0)
                m.bias.uniform_(-0.1, 0.1)
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 2.0)
                m.num_batches_tracked.fill_(100)
    return model.eval()


def _resnet_features(tv: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    out = {"stem": tv.maxpool(tv.relu(tv.bn1(tv.conv1(x))))}
    for i, name in enumerate(("res2", "res3", "res4", "res5")):
        out[name] = getattr(tv, f"layer{i + 1}")(list(out.values())[-1])
    return out


def _sequential_taps(
    features: nn.Sequential, x: torch.Tensor, taps: dict[int, str]
) -> dict[str, torch.Tensor]:
    out = {}
    for i, layer in enumerate(features[: max(taps) + 1]):
        x = layer(x)
        if i in taps:
            out[taps[i]] = x
    return out


_VGG_TAPS = {3: "conv1", 8: "conv2", 15: "conv3", 22: "conv4", 29: "conv5"}
_MOBILENET_TAPS = {1: "s2", 3: "s4", 6: "s8", 12: "s16", 16: "s32"}


def _ours(arch: str, tv: nn.Module, x: torch.Tensor, roi: torch.Tensor) -> dict[str, torch.Tensor]:
    """The rcnnzoo module's features for ``x`` (and VGG16's fc7 for ``roi``), from ``tv``'s converted weights."""
    weights = torchvision_backbone_weights(tv.state_dict(), arch)
    if arch.startswith("resnet"):
        depth = int(arch.removeprefix("resnet"))
        ours = ResNet(depth=depth, out_features=["stem", "res2", "res3", "res4", "res5"], freeze_at=0)
    elif arch == "vgg16":
        ours = build_imagenet_backbone(arch)  # conv layers and fc6/fc7
    else:
        ours = MobileNetV3(out_features=list(_MOBILENET_TAPS.values()), freeze_at=0)
    ours.load_state_dict(weights, strict=True)
    ours.eval()
    if arch == "vgg16":
        return {**_sequential_taps(ours.features, x, _VGG_TAPS), "fc7": ours.classifier(roi)}
    if arch != "mobilenet_v3_large":  # the module the tool verifies against takes the same keys
        build_imagenet_backbone(arch).load_state_dict(weights, strict=True)
    return ours(x)


def _theirs(arch: str, tv: nn.Module, x: torch.Tensor, roi: torch.Tensor) -> dict[str, torch.Tensor]:
    """torchvision's intermediate features at the same places."""
    if arch.startswith("resnet"):
        return _resnet_features(tv, x)
    if arch == "vgg16":
        return {**_sequential_taps(tv.features, x, _VGG_TAPS), "fc7": tv.classifier[:5](roi.flatten(1))}
    return _sequential_taps(tv.features, x, _MOBILENET_TAPS)


@functools.cache
def _tv_vgg16() -> nn.Module:
    """One torchvision VGG16 for the tests that need it (138M parameters; it has no BN to randomise)."""
    torch.manual_seed(0)
    return torchvision.models.vgg16().eval()


@pytest.mark.parametrize("arch", TORCHVISION_IMAGENET_ARCHS)
def test_backbone_features_equal_torchvision(arch):
    tv = _tv_vgg16() if arch == "vgg16" else _torchvision(arch)
    x = torch.randn(1, 3, 64, 96) if arch != "vgg16" else torch.randn(1, 3, 32, 48)
    roi = torch.randn(2, 512, 7, 7)
    with torch.no_grad():
        got = _ours(arch, tv, x, roi)
        plain = _theirs(arch, tv, x, roi)  # eval-mode BatchNorm2d
        FrozenBatchNorm2d.convert_frozen_batchnorm(tv)
        expected = _theirs(arch, tv, x, roi)
    assert list(got) == list(expected)
    for name in expected:
        assert torch.isfinite(expected[name]).all() and expected[name].abs().max() > 0, name
        assert torch.equal(got[name], expected[name]), f"{arch} {name}"
        scale = plain[name].abs().max().item()
        torch.testing.assert_close(got[name], plain[name], rtol=1e-4, atol=1e-4 * scale)


def test_classifier_is_dropped_and_unknown_keys_are_listed():
    sd = torchvision.models.resnet18().state_dict()
    weights = torchvision_backbone_weights(sd, "resnet18")
    assert not any(k.startswith("fc.") or k.endswith("num_batches_tracked") for k in weights)
    sd["layer5.0.conv1.weight"] = torch.zeros(1)
    with pytest.raises(ConversionError, match=r"layer5\.0\.conv1\.weight"):
        torchvision_backbone_weights(sd, "resnet18")
    with pytest.raises(ConversionError, match=r"features\.0\.weight"):  # a VGG16 file converted as a ResNet
        torchvision_backbone_weights({"features.0.weight": torch.zeros(1)}, "resnet50")
    with pytest.raises(ConversionError, match="Unknown ImageNet arch"):
        torchvision_backbone_weights({}, "resnet152")


def test_resnet50_default_placement_fits_the_fpn_configs_and_reports_the_convention():
    tv = _torchvision("resnet50")
    converted = convert_torchvision_backbone(tv.state_dict(), "resnet50")
    assert all(k.startswith("backbone.bottom_up.") for k in converted)

    model = instantiate(get_config("COCO-Detection/torchvision/fasterrcnn_resnet50_fpn.py").model)
    missing, unexpected = model.load_state_dict(converted, strict=False)
    assert unexpected == [] and missing and not any(k.startswith("backbone.bottom_up.") for k in missing)
    assert torch.equal(model.backbone.bottom_up.layer3[2].bn1.running_var, tv.layer3[2].bn1.running_var)
    assert convention_mismatches(model, "resnet50") == []

    # the detectron2-recipe configs want MSRA weights: BGR, std 1, stride in the 1x1 convs
    d2 = instantiate(get_config("COCO-Detection/faster_rcnn_R_50_FPN_1x.py").model)
    problems = convention_mismatches(d2, "resnet50")
    assert any("input_format='RGB'" in p for p in problems) and any("pixel_std" in p for p in problems)
    assert "model.backbone.bottom_up.stride_in_1x1=False (is True)" in problems
    assert convention_mismatches(d2, "R-50") == []


def test_vgg16_placement_fills_backbone_and_fc6_fc7_of_the_vgg16_config():
    tv = _tv_vgg16()
    model = instantiate(get_config("COCO-Detection/faster_rcnn_vgg16.py").model)
    weights = torchvision_backbone_weights(tv.state_dict(), "vgg16")
    placed = place_backbone_weights(weights, "vgg16", model)
    assert placed.prefixes == {
        "features.": "backbone.features.",
        "classifier.": "roi_heads.box_head.classifier.",
    }
    assert placed.state_dict.keys() == convert_torchvision_backbone(tv.state_dict(), "vgg16").keys()
    missing, unexpected = model.load_state_dict(placed.state_dict, strict=False)
    assert unexpected == [] and all(
        k.startswith(("proposal_generator.", "roi_heads.box_predictor.")) for k in missing
    )
    assert torch.equal(model.roi_heads.box_head.classifier[3].weight, tv.classifier[3].weight)


def test_mobilenet_placement_under_an_fpn_skips_blocks_not_built():
    detector = nn.Module()
    detector.backbone = FPN(bottom_up=MobileNetV3(out_features=["s8", "s16"]), in_features=["s8", "s16"])
    weights = torchvision_backbone_weights(
        torchvision.models.mobilenet_v3_large().state_dict(), "mobilenet_v3_large"
    )
    placed = place_backbone_weights(weights, "mobilenet_v3_large", detector)
    assert placed.prefixes == {"": "backbone.bottom_up."}
    assert placed.not_placed and all(
        k.startswith(("features.13.", "features.14.", "features.15.", "features.16."))
        for k, _ in placed.not_placed
    )
    missing, unexpected = detector.load_state_dict(placed.state_dict, strict=False)
    assert unexpected == [] and all(
        k.startswith(("backbone.lateral_convs", "backbone.output_convs")) for k in missing
    )


def test_resnet18_weights_do_not_place_into_a_resnet50():
    model = instantiate(get_config("COCO-Detection/faster_rcnn_R_50_FPN_1x.py").model)
    weights = torchvision_backbone_weights(torchvision.models.resnet18().state_dict(), "resnet18")
    with pytest.raises(ConversionError, match="not a ResNet-18"):
        place_backbone_weights(weights, "resnet18", model)
