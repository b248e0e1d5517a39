"""ImageNet classification weights -> the backbone (and ImageNet-initialised head layers) of a detector.

Two steps, kept apart because the second depends on the detector, the first only on the network:

1. **Backbone weights** (:func:`torchvision_backbone_weights`, and
   :func:`rcnnzoo.model_zoo.converters.detectron2.msra_backbone_weights` for the MSRA files):
   the classifier's state dict with torchvision's names, minus what detection does not use (the
   1000-way classifier, ``num_batches_tracked``). These are exactly the keys of
   :func:`build_imagenet_backbone`, which loads them strictly:

   ==================  =====================================================================
   family              keys
   ==================  =====================================================================
   resnet              ``conv1``, ``bn1``, ``layer1`` .. ``layer4`` (:class:`ResNet`)
   vgg16               ``features.0`` .. ``features.28`` (:class:`VGG16`), ``classifier.0``
                       and ``classifier.3`` (fc6, fc7: :func:`vgg16_fc67`)
   mobilenet_v3_large  ``features.0`` .. ``features.16`` (:class:`MobileNetV3`)
   ==================  =====================================================================

2. **Placement** (:func:`place_backbone_weights`): the key prefixes of a given detector. The modules
   are found by type, so any config works: a :class:`ResNet` at ``backbone.bottom_up`` (FPN) or
   ``backbone`` (C4, whose ``layer4`` becomes the box head's ``res5``), a :class:`VGG16` at
   ``backbone`` with fc6/fc7 in the box head, a :class:`MobileNetV3` under an FPN. Without a model,
   the layout of the shipped configs is used (:data:`DEFAULT_PREFIXES`).

Every ImageNet network was trained on one input convention (channel order, mean, std, and for
ResNets where the stride sits); :func:`convention_mismatches` lists what a model would have to
change to match it, since a mismatch loads without error and only shows as poor accuracy.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

import torch
from torch import nn

from .torchvision import ConversionError

__all__ = [
    "DEFAULT_PREFIXES",
    "IMAGENET_BACKBONES",
    "ImageNetBackbone",
    "PlacedWeights",
    "TORCHVISION_IMAGENET_ARCHS",
    "build_imagenet_backbone",
    "convention_mismatches",
    "convert_torchvision_backbone",
    "place_backbone_weights",
    "torchvision_backbone_weights",
]

# torchvision's ImageNet normalization (RGB, 0-1 scale) in 0-255 units, as rcnnzoo models take it
TORCHVISION_PIXEL_MEAN = (123.675, 116.28, 103.53)
TORCHVISION_PIXEL_STD = (58.395, 57.12, 57.375)
# MSRA's Caffe ResNets: BGR, mean subtracted, no division
MSRA_PIXEL_MEAN = (103.530, 116.280, 123.675)
MSRA_PIXEL_STD = (1.0, 1.0, 1.0)


@dataclass(frozen=True)
class ImageNetBackbone:
    """An ImageNet network: its rcnnzoo module family and the input convention it was trained on.

    Attributes:
        family: ``"resnet"``, ``"vgg16"`` or ``"mobilenet_v3_large"``.
        depth: the ResNet depth (``None`` otherwise).
        source: the project whose files hold it (``"torchvision"`` or ``"detectron2"``).
        input_format, pixel_mean, pixel_std: the model settings the weights expect.
        stride_in_1x1: for bottleneck ResNets, the stride of each stage's first block sits in its
            first 1x1 conv (MSRA/Caffe) rather than its 3x3 conv (torchvision).
    """

    family: str
    depth: int | None = None
    source: str = "torchvision"
    input_format: str = "RGB"
    pixel_mean: tuple[float, float, float] = TORCHVISION_PIXEL_MEAN
    pixel_std: tuple[float, float, float] = TORCHVISION_PIXEL_STD
    stride_in_1x1: bool = False


_MSRA = dict(
    source="detectron2",
    input_format="BGR",
    pixel_mean=MSRA_PIXEL_MEAN,
    pixel_std=MSRA_PIXEL_STD,
    stride_in_1x1=True,
)

IMAGENET_BACKBONES: dict[str, ImageNetBackbone] = {
    "resnet18": ImageNetBackbone("resnet", 18),
    "resnet34": ImageNetBackbone("resnet", 34),
    "resnet50": ImageNetBackbone("resnet", 50),
    "resnet101": ImageNetBackbone("resnet", 101),
    "vgg16": ImageNetBackbone("vgg16"),
    "mobilenet_v3_large": ImageNetBackbone("mobilenet_v3_large"),
    # detectron2's ImageNetPretrained/MSRA/R-{50,101}.pkl (Caffe2 names, BN folded into an affine)
    "R-50": ImageNetBackbone("resnet", 50, **_MSRA),
    "R-101": ImageNetBackbone("resnet", 101, **_MSRA),
}
"""Every supported ImageNet arch name -> what it is. torchvision's names are its builder names."""

TORCHVISION_IMAGENET_ARCHS: tuple[str, ...] = tuple(
    name for name, spec in IMAGENET_BACKBONES.items() if spec.source == "torchvision"
)
"""The torchvision classification builders whose ImageNet state dicts convert (``--source torchvision``)."""

DEFAULT_PREFIXES: dict[str, dict[str, str]] = {
    "resnet": {"": "backbone.bottom_up."},
    "mobilenet_v3_large": {"": "backbone.bottom_up."},
    "vgg16": {"features.": "backbone.features.", "classifier.": "roi_heads.box_head.classifier."},
}
"""family -> {backbone key prefix: model key prefix} without a model: the FPN configs (ResNet,
MobileNetV3 under ``backbone.bottom_up``) and the VGG16 configs (fc6/fc7 in the box head)."""

# What each family's torchvision state dict holds: kept (backbone) or dropped (classifier).
_KEEP = {
    "resnet": re.compile(r"^(conv1|bn1|layer[1-4]\.\d+\.(conv[1-3]|bn[1-3]|downsample\.[01]))\.[a-z_]+$"),
    "vgg16": re.compile(r"^(features\.\d+|classifier\.[03])\.(weight|bias)$"),
    "mobilenet_v3_large": re.compile(r"^features\.\d+\.[\w.]+$"),
}
_DROP = {
    "resnet": re.compile(r"^fc\.(weight|bias)$|\.num_batches_tracked$"),
    "vgg16": re.compile(r"^classifier\.6\.(weight|bias)$|\.num_batches_tracked$"),
    "mobilenet_v3_large": re.compile(r"^classifier\.[03]\.(weight|bias)$|\.num_batches_tracked$"),
}


def _spec(arch: str) -> ImageNetBackbone:
    if arch not in IMAGENET_BACKBONES:
        raise ConversionError(f"Unknown ImageNet arch {arch!r}; supported: {', '.join(IMAGENET_BACKBONES)}")
    return IMAGENET_BACKBONES[arch]


def torchvision_backbone_weights(
    state_dict: Mapping[str, torch.Tensor], arch: str
) -> dict[str, torch.Tensor]:
    """torchvision's ImageNet ``arch`` state dict without the classifier: the keys of
    :func:`build_imagenet_backbone` (``arch``).

    Args:
        state_dict: e.g. ``torchvision.models.resnet50(weights="IMAGENET1K_V1").state_dict()``.
        arch: one of :data:`TORCHVISION_IMAGENET_ARCHS`.
    Raises:
        ConversionError: an unknown arch, or keys that are not ``arch``'s (all are listed).
    """
    spec = _spec(arch)
    if spec.source != "torchvision":
        raise ConversionError(
            f"{arch!r} is not a torchvision arch; supported: {', '.join(TORCHVISION_IMAGENET_ARCHS)}"
        )
    keep, drop = _KEEP[spec.family], _DROP[spec.family]
    out, unknown = {}, []
    for key, value in state_dict.items():
        if drop.search(key):
            continue
        if keep.match(key):
            out[key] = value
        else:
            unknown.append(key)
    if unknown:
        raise ConversionError(
            f"{len(unknown)} keys are not those of torchvision's {arch}: {unknown[:20]}"
            + (" ..." if len(unknown) > 20 else "")
        )
    return out


class _VGG16Weights(nn.Module):
    """VGG16's conv layers and fc6/fc7 side by side: the module whose keys the ImageNet weights fill."""

    def __init__(self) -> None:
        from rcnnzoo.modeling.backbone.vgg import VGG16, vgg16_fc67

        super().__init__()
        self.features = VGG16(out_features=["conv5"], freeze_at=0).features
        self.classifier = vgg16_fc67()


def build_imagenet_backbone(arch: str) -> nn.Module:
    """The rcnnzoo module whose ``state_dict()`` keys are exactly ``arch``'s backbone weights:
    every stage (ResNet res2..res5, all of MobileNetV3's blocks, VGG16 conv1..conv5 with fc6/fc7),
    FrozenBN, and for MSRA ResNets the stride in the 1x1 convs."""
    from rcnnzoo.modeling.backbone import MobileNetV3, ResNet

    spec = _spec(arch)
    if spec.family == "resnet":
        return ResNet(
            depth=spec.depth,
            out_features=["res2", "res3", "res4", "res5"],
            freeze_at=0,
            stride_in_1x1=spec.stride_in_1x1,
        )
    if spec.family == "vgg16":
        return _VGG16Weights()
    return MobileNetV3(out_features=["s32"], freeze_at=0)


@dataclass
class PlacedWeights:
    """Backbone weights renamed for a detector.

    Attributes:
        state_dict: model key -> tensor, for ``model.load_state_dict(..., strict=False)`` or a
            checkpoint's ``"model"``.
        prefixes: backbone key prefix -> model key prefix that were used.
        not_placed: ``(backbone key, reason)`` for weights the model has no place for (a stage it
            does not build, fc6 of another input size ...).
    """

    state_dict: dict[str, torch.Tensor]
    prefixes: dict[str, str]
    not_placed: list[tuple[str, str]] = field(default_factory=list)


def _paths_of(model: nn.Module, cls: type) -> list[str]:
    return [name for name, m in model.named_modules() if isinstance(m, cls)]


def _dotted(path: str) -> str:
    return f"{path}." if path else ""


def _model_prefixes(family: str, model: nn.Module) -> dict[str, str]:
    """{backbone key prefix: model key prefix} for the modules of ``family`` found in ``model``."""
    from rcnnzoo.modeling.backbone import VGG16, MobileNetV3, ResNet, VGGFc67
    from rcnnzoo.modeling.roi_heads.box_head import Res5BoxHead

    cls = {"resnet": ResNet, "vgg16": VGG16, "mobilenet_v3_large": MobileNetV3}[family]
    paths = _paths_of(model, cls)
    if len(paths) != 1:
        raise ConversionError(
            f"Expected one {cls.__name__} in {type(model).__name__} to place {family} weights, found "
            f"{len(paths)}{': ' + ', '.join(paths) if paths else ''}"
        )
    prefixes = (
        {"": _dotted(paths[0])} if family != "vgg16" else {"features.": _dotted(paths[0]) + "features."}
    )
    if family == "resnet" and not hasattr(model.get_submodule(paths[0]), "layer4"):
        heads = _paths_of(model, Res5BoxHead)
        if len(heads) == 1:  # the C4 model: ImageNet's res5 runs per RoI in the box head
            prefixes = {"layer4.": _dotted(heads[0]) + "res5.", **prefixes}
    if family == "vgg16":
        fcs = _paths_of(model, VGGFc67)
        if len(fcs) == 1:
            prefixes["classifier."] = _dotted(fcs[0])
    return prefixes


def place_backbone_weights(
    weights: Mapping[str, torch.Tensor], arch: str, model: nn.Module | None = None
) -> PlacedWeights:
    """Prefix backbone ``weights`` (keys of :func:`build_imagenet_backbone`) with their place in ``model``.

    Args:
        weights: from :func:`torchvision_backbone_weights` or ``msra_backbone_weights``.
        arch: the ImageNet arch, one of :data:`IMAGENET_BACKBONES`.
        model: the detector; ``None`` uses :data:`DEFAULT_PREFIXES` (the shipped configs' layout),
            and then every weight is placed.
    Raises:
        ConversionError: ``model`` has no (or several) modules of the arch's family, or its module
            is of another size (e.g. a ResNet-50 given ResNet-101 or ResNet-18 weights).
    """
    spec = _spec(arch)
    prefixes = dict(DEFAULT_PREFIXES[spec.family]) if model is None else _model_prefixes(spec.family, model)
    ordered = sorted(prefixes, key=len, reverse=True)  # "layer4." before ""
    target = model.state_dict() if model is not None else None
    placed = PlacedWeights(state_dict={}, prefixes=prefixes)
    unplaced_targets: list[tuple[str, str]] = []
    for key, value in weights.items():
        src = next((p for p in ordered if key.startswith(p)), None)
        if src is None:
            placed.not_placed.append((key, "the model has no module for it"))
            continue
        new_key = prefixes[src] + key[len(src) :]
        if target is not None and new_key not in target:
            placed.not_placed.append((key, f"the model does not build {new_key}"))
            unplaced_targets.append((key, new_key))
        elif target is not None and tuple(target[new_key].shape) != tuple(value.shape):
            placed.not_placed.append(
                (key, f"{new_key} is {tuple(target[new_key].shape)} in the model, {tuple(value.shape)} here")
            )
        else:
            placed.state_dict[new_key] = value
    if model is not None:
        _check_complete(placed, model, spec, unplaced_targets)
    return placed


def _check_complete(
    placed: PlacedWeights, model: nn.Module, spec: ImageNetBackbone, unplaced_targets: list[tuple[str, str]]
) -> None:
    """Raise unless the weights fill the model's backbone (and a C4 head's res5) completely and no
    block of the file falls in a stage that the model builds shorter: another depth or block type
    would otherwise load in part, silently. (Whole stages or blocks the model does not build, and
    fc6/fc7 of another shape, are fine.)"""
    filled = tuple(p for src, p in placed.prefixes.items() if src != "classifier.")
    unfilled = [k for k in model.state_dict() if k.startswith(filled) and k not in placed.state_dict]
    modules = dict(model.named_modules())
    # "backbone.layer3.6.conv1.weight" belongs to stage "backbone.layer3", which the model may build
    deeper = [key for key, new_key in unplaced_targets if re.sub(r"\.\d+\..*$", "", new_key) in modules]
    if spec.family == "resnet" and (unfilled or deeper):
        raise ConversionError(
            f"The model's ResNet is not a ResNet-{spec.depth}: {len(unfilled)} of its weights have no "
            f"counterpart of that shape in the file {unfilled[:5]}; {len(deeper)} of the file's weights "
            f"are in blocks that the model's stages lack {deeper[:5]}"
        )
    if unfilled:
        raise ConversionError(
            f"{len(unfilled)} weights of the model's backbone are not in the file: {unfilled[:5]}"
        )


def convert_torchvision_backbone(
    state_dict: Mapping[str, torch.Tensor], arch: str, model: nn.Module | None = None
) -> dict[str, torch.Tensor]:
    """torchvision's ImageNet ``arch`` state dict -> the backbone keys of ``model`` (or of the shipped
    configs' layout, e.g. ``backbone.bottom_up.conv1.weight``), classifier dropped.

    The result loads with ``strict=False``: the detector's other layers (FPN, RPN, heads) are
    missing from it and keep their initialization. See :func:`place_backbone_weights` for what
    ``model`` changes.
    """
    return place_backbone_weights(torchvision_backbone_weights(state_dict, arch), arch, model).state_dict


def _resnets_stride_in_1x1(model: nn.Module) -> list[tuple[str, bool]]:
    """(module path, strides in its 1x1 conv) for each bottleneck stage built with a stride."""
    from torchvision.models.resnet import Bottleneck

    found = []
    for name, m in model.named_modules():
        if (
            isinstance(m, nn.Sequential)
            and len(m)
            and isinstance(m[0], Bottleneck)
            and m[0].downsample is not None
        ):
            if m[0].downsample[0].stride != (1, 1):
                found.append((name, m[0].conv1.stride != (1, 1)))
    return found


def convention_mismatches(model: nn.Module, arch: str) -> list[str]:
    """What ``model`` would have to change to take ``arch``'s weights as they were trained, e.g.
    ``["model.input_format='RGB' (is 'BGR')", ...]``; empty when it matches.

    Checks ``input_format``, ``pixel_mean`` and ``pixel_std`` (in the units of the model's
    ``pixel_divisor``) when the model has them, and for
    bottleneck ResNets whether each strided stage puts the stride in its 1x1 conv.
    """
    spec = _spec(arch)
    problems = []
    if getattr(model, "input_format", spec.input_format) != spec.input_format:
        problems.append(f"model.input_format={spec.input_format!r} (is {model.input_format!r})")
    # a model may divide pixels by ``pixel_divisor`` first, with mean/std on that scale
    divisor = float(getattr(model, "pixel_divisor", 1.0))
    for name, expected in (("pixel_mean", spec.pixel_mean), ("pixel_std", spec.pixel_std)):
        value = getattr(model, name, None)
        if isinstance(value, torch.Tensor):
            got = [float(v) for v in value.flatten()]
            if len(got) != len(expected) or any(abs(a * divisor - b) > 1e-3 for a, b in zip(got, expected)):
                want = [round(v / divisor, 6) for v in expected]
                problems.append(f"model.{name}={want} (is {[round(v, 6) for v in got]})")
    if spec.family == "resnet" and spec.depth is not None and spec.depth >= 50:
        # a stage path "backbone.bottom_up.layer2" names the ResNet "backbone.bottom_up"; a C4 box
        # head's "roi_heads.box_head.res5" names the head
        owners = {
            path.rsplit(".", 1)[0]
            for path, in_1x1 in _resnets_stride_in_1x1(model)
            if in_1x1 != spec.stride_in_1x1
        }
        for owner in sorted(owners):
            problems.append(f"model.{owner}.stride_in_1x1={spec.stride_in_1x1} (is {not spec.stride_in_1x1})")
    return problems
