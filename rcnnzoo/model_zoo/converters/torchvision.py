"""torchvision detection state dicts -> rcnnzoo's, for the configs under ``configs/*/torchvision/``.

Besides the names, three things change:

* **Class order.** torchvision puts the background at index 0 of its ``num_classes`` outputs;
  rcnnzoo puts it last (see :mod:`rcnnzoo.modeling.roi_heads.fast_rcnn`), has no background box
  deltas and no background mask. So the classifier's rows ``[0, 1 .. K]`` become ``[1 .. K, 0]``,
  the box regressor's background group of 4 rows is dropped, and so is the mask predictor's
  background channel. torchvision class ``c`` (c >= 1) becomes rcnnzoo class ``c - 1``.
* **Anchor order.** With several anchor sizes per location (MobileNetV3: 5 sizes x 3 ratios)
  torchvision orders a location's anchors ratio-major, rcnnzoo size-major
  (:func:`rcnnzoo.modeling.anchor_generator.make_cell_anchors`); the RPN head's output channels
  are permuted to match.
* **BatchNorm bookkeeping.** ``num_batches_tracked`` has no counterpart in FrozenBN and is dropped
  where the rcnnzoo model has FrozenBN (v1 and MobileNetV3 backbones); the v2 models keep
  ``nn.BatchNorm2d`` everywhere, as torchvision's, and keep it.

Both the current torchvision layout (``rpn.head.conv.0.0.weight``, ``fpn.inner_blocks.0.0.weight``,
``mask_head.0.0.weight``) and the older one (``rpn.head.conv.weight``, ``fpn.inner_blocks.0.weight``,
``mask_head.mask_fcn1.weight``) are accepted. A key that no rule maps is an error, so that a
layout this module does not know fails loudly instead of leaving weights at their initialization.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch

__all__ = ["ConversionError", "TORCHVISION_ARCHS", "convert_torchvision_state_dict"]


@dataclass(frozen=True)
class _Arch:
    """What the conversion of one torchvision builder's weights needs to know.

    Attributes:
        config: the shipped config (relative to ``configs/``) whose model takes the weights.
        mobilenet: the backbone is MobileNetV3 (``body.{i}`` -> ``bottom_up.features.{i}``), not ResNet.
        frozen_bn: the rcnnzoo backbone has FrozenBN, so ``num_batches_tracked`` is dropped.
        norm_in_heads: FPN, box-head and mask-head convs are followed by BatchNorm (the v2 models).
        box_head_convs: 0 for TwoMLPHead (``fc6``, ``fc7``); n for FastRCNNConvFCHead with n convs.
        anchor_sizes, anchor_ratios: anchors per location, for the RPN head's channel order.
        masks: the model has a mask branch.
    """

    config: str
    mobilenet: bool = False
    frozen_bn: bool = True
    norm_in_heads: bool = False
    box_head_convs: int = 0
    anchor_sizes: int = 1
    anchor_ratios: int = 3
    masks: bool = False


_ARCHS: dict[str, _Arch] = {
    "fasterrcnn_resnet50_fpn": _Arch("COCO-Detection/torchvision/fasterrcnn_resnet50_fpn.py"),
    "fasterrcnn_resnet50_fpn_v2": _Arch(
        "COCO-Detection/torchvision/fasterrcnn_resnet50_fpn_v2.py",
        frozen_bn=False,
        norm_in_heads=True,
        box_head_convs=4,
    ),
    "fasterrcnn_mobilenet_v3_large_fpn": _Arch(
        "COCO-Detection/torchvision/fasterrcnn_mobilenet_v3_large_fpn.py", mobilenet=True, anchor_sizes=5
    ),
    "maskrcnn_resnet50_fpn": _Arch(
        "COCO-InstanceSegmentation/torchvision/maskrcnn_resnet50_fpn.py", masks=True
    ),
    "maskrcnn_resnet50_fpn_v2": _Arch(
        "COCO-InstanceSegmentation/torchvision/maskrcnn_resnet50_fpn_v2.py",
        frozen_bn=False,
        norm_in_heads=True,
        box_head_convs=4,
        masks=True,
    ),
}

TORCHVISION_ARCHS: dict[str, str] = {name: arch.config for name, arch in _ARCHS.items()}
"""Supported torchvision builder names -> the shipped config whose model takes the converted weights."""


class ConversionError(ValueError):
    """A state dict that does not have the layout of the architecture it was converted as."""


_Transform = Callable[[torch.Tensor], torch.Tensor]


def _background_last(t: torch.Tensor) -> torch.Tensor:
    """Rows ``[bg, c1 .. cK]`` -> ``[c1 .. cK, bg]`` (classifier weight Tensor[K+1, D] or bias Tensor[K+1])."""
    return torch.cat([t[1:], t[:1]], dim=0)


def _drop_background_deltas(t: torch.Tensor) -> torch.Tensor:
    """Box regressor rows ``4 * (K+1)`` -> ``4 * K``, without the background's group of four."""
    if t.shape[0] % 4:
        raise ConversionError(f"Box regressor with {t.shape[0]} rows, not a multiple of 4")
    return t.reshape(t.shape[0] // 4, 4, *t.shape[1:])[1:].reshape(-1, *t.shape[1:])


def _drop_background(t: torch.Tensor) -> torch.Tensor:
    """Per-class mask predictor channels ``[bg, c1 .. cK]`` -> ``[c1 .. cK]``."""
    return t[1:]


def _anchor_order(num_sizes: int, num_ratios: int, group: int) -> _Transform | None:
    """Rows of an RPN output conv, ratio-major (torchvision) -> size-major (rcnnzoo), in groups of
    ``group`` rows per anchor (1 for objectness, 4 for deltas). ``None`` when the order is the same."""
    if num_sizes == 1 or num_ratios == 1:
        return None
    # rcnnzoo's anchor a = s * R + r is torchvision's r * S + s
    perm = [(a % num_ratios) * num_sizes + a // num_ratios for a in range(num_sizes * num_ratios)]

    def reorder(t: torch.Tensor) -> torch.Tensor:
        if t.shape[0] != len(perm) * group:
            raise ConversionError(f"RPN output conv with {t.shape[0]} rows, expected {len(perm) * group}")
        return t.reshape(len(perm), group, *t.shape[1:])[perm].reshape(t.shape)

    return reorder


# A rule: (pattern, replacement, transform). The replacement is a ``re.sub`` template, a function of
# the match returning the new key (or None: not a key of this layout), or None to drop the key.
_Replacement = str | Callable[[re.Match[str]], str | None] | None
_Rule = tuple[re.Pattern[str], _Replacement, _Transform | None]


def _rule(pattern: str, replacement: _Replacement, transform: _Transform | None = None) -> _Rule:
    return re.compile(pattern), replacement, transform


def _conv_block(
    prefix: str, stride: int, max_index: int | None = None
) -> Callable[[re.Match[str]], str | None]:
    """torchvision's ``Conv2dNormActivation`` number i (groups: i, sub-module j, rest) -> rcnnzoo's
    flat ``prefix.{stride * i + j}.rest`` (conv + ReLU: stride 2; conv + norm + ReLU: stride 3)."""

    def rename(m: re.Match[str]) -> str | None:
        i, j = int(m.group(1)), int(m.group(2) or 0)
        if max_index is not None and i >= max_index:
            return None
        return f"{prefix}.{stride * i + j}.{m.group(3)}"

    return rename


def _fc_after_convs(num_convs: int) -> Callable[[re.Match[str]], str | None]:
    """FastRCNNConvFCHead's Linear at ``num_convs + 1 + 2k`` (after the convs and a Flatten) ->
    rcnnzoo's ``fcs.{2k}``."""

    def rename(m: re.Match[str]) -> str | None:
        k2 = int(m.group(1)) - num_convs - 1
        return f"roi_heads.box_head.fcs.{k2}.{m.group(2)}" if k2 >= 0 and k2 % 2 == 0 else None

    return rename


def _rules(arch: _Arch) -> list[_Rule]:
    """The rules for ``arch``; the first matching one applies."""
    sub = "([01])" if arch.norm_in_heads else "(0)"  # sub-modules of a conv block: conv (+ norm)
    body = "backbone.bottom_up.features" if arch.mobilenet else "backbone.bottom_up"
    rules: list[_Rule] = []
    if arch.frozen_bn:
        rules.append(_rule(r"^backbone\.body\..*\.num_batches_tracked$", None))
    rules += [
        _rule(r"^backbone\.body\.(.+)$", body + r".\1"),
        _rule(rf"^backbone\.fpn\.inner_blocks\.(\d+)\.{sub}\.(.+)$", r"backbone.lateral_convs.\1.\2.\3"),
        _rule(r"^backbone\.fpn\.inner_blocks\.(\d+)\.(weight|bias)$", r"backbone.lateral_convs.\1.0.\2"),
        _rule(rf"^backbone\.fpn\.layer_blocks\.(\d+)\.{sub}\.(.+)$", r"backbone.output_convs.\1.\2.\3"),
        _rule(r"^backbone\.fpn\.layer_blocks\.(\d+)\.(weight|bias)$", r"backbone.output_convs.\1.0.\2"),
        # RPNHead's conv i (conv_depth of them) is at 2i of rcnnzoo's conv + ReLU sequence
        _rule(
            r"^rpn\.head\.conv\.(\d+)\.(0)\.(weight|bias)$", _conv_block("proposal_generator.head.conv", 2)
        ),
        _rule(r"^rpn\.head\.conv\.(weight|bias)$", r"proposal_generator.head.conv.0.\1"),
        _rule(
            r"^rpn\.head\.cls_logits\.(weight|bias)$",
            r"proposal_generator.head.objectness_logits.\1",
            _anchor_order(arch.anchor_sizes, arch.anchor_ratios, 1),
        ),
        _rule(
            r"^rpn\.head\.bbox_pred\.(weight|bias)$",
            r"proposal_generator.head.anchor_deltas.\1",
            _anchor_order(arch.anchor_sizes, arch.anchor_ratios, 4),
        ),
    ]
    if arch.box_head_convs:
        n = arch.box_head_convs
        rules += [
            _rule(
                rf"^roi_heads\.box_head\.(\d+)\.{sub}\.(.+)$", _conv_block("roi_heads.box_head.convs", 3, n)
            ),
            _rule(r"^roi_heads\.box_head\.(\d+)\.(weight|bias)$", _fc_after_convs(n)),
        ]
    else:
        rules += [
            _rule(r"^roi_heads\.box_head\.fc6\.(weight|bias)$", r"roi_heads.box_head.fcs.0.\1"),
            _rule(r"^roi_heads\.box_head\.fc7\.(weight|bias)$", r"roi_heads.box_head.fcs.2.\1"),
        ]
    rules += [
        _rule(
            r"^roi_heads\.box_predictor\.cls_score\.(weight|bias)$",
            r"roi_heads.box_predictor.cls_score.\1",
            _background_last,
        ),
        _rule(
            r"^roi_heads\.box_predictor\.bbox_pred\.(weight|bias)$",
            r"roi_heads.box_predictor.bbox_pred.\1",
            _drop_background_deltas,
        ),
    ]
    if arch.masks:
        # conv i of the mask head: conv + ReLU (v1, stride 2) or conv + BN + ReLU (v2, stride 3)
        stride = 3 if arch.norm_in_heads else 2
        rules += [
            _rule(
                rf"^roi_heads\.mask_head\.(\d+)\.{sub}\.(.+)$",
                _conv_block("roi_heads.mask_head.convs", stride),
            ),
            _rule(
                r"^roi_heads\.mask_head\.mask_fcn(\d+)\.(weight|bias)$",
                lambda m: f"roi_heads.mask_head.convs.{stride * (int(m.group(1)) - 1)}.{m.group(2)}",
            ),
            _rule(
                r"^roi_heads\.mask_predictor\.conv5_mask\.(weight|bias)$", r"roi_heads.mask_head.deconv.\1"
            ),
            _rule(
                r"^roi_heads\.mask_predictor\.mask_fcn_logits\.(weight|bias)$",
                r"roi_heads.mask_head.predictor.\1",
                _drop_background,
            ),
        ]
    return rules


def _rename(key: str, rules: list[_Rule]) -> tuple[str | None, _Transform | None] | None:
    """``(new key or None to drop, transform)``, or ``None`` when no rule knows ``key``."""
    for pattern, replacement, transform in rules:
        m = pattern.match(key)
        if m is None:
            continue
        if replacement is None:
            return None, None
        new_key = replacement(m) if callable(replacement) else m.expand(replacement)
        return (new_key, transform) if new_key is not None else None
    return None


def convert_torchvision_state_dict(
    state_dict: Mapping[str, torch.Tensor], arch: str
) -> dict[str, torch.Tensor]:
    """Rename and reorder torchvision's ``arch`` weights for the rcnnzoo model of ``TORCHVISION_ARCHS[arch]``.

    Args:
        state_dict: torchvision's ``model.state_dict()`` (or the file of a published checkpoint,
            which is the same dict).
        arch: the torchvision builder name, one of :data:`TORCHVISION_ARCHS`.
    Returns:
        a new state dict with rcnnzoo's names (tensors are shared where not reordered).
    Raises:
        ConversionError: ``arch`` is not supported, or some keys match no rule (all are listed).
    """
    if arch not in _ARCHS:
        raise ConversionError(
            f"Unsupported torchvision arch {arch!r}; supported: {', '.join(TORCHVISION_ARCHS)}"
        )
    rules = _rules(_ARCHS[arch])
    out: dict[str, torch.Tensor] = {}
    unknown: list[str] = []
    for key, value in state_dict.items():
        renamed = _rename(key, rules)
        if renamed is None:
            unknown.append(key)
            continue
        new_key, transform = renamed
        if new_key is not None:
            out[new_key] = transform(value) if transform is not None else value
    if unknown:
        raise ConversionError(
            f"{len(unknown)} keys of the state dict have no rcnnzoo counterpart for {arch!r}: {unknown[:20]}"
            + (" ..." if len(unknown) > 20 else "")
        )
    return out
