"""torchvision detection state dicts -> rcnnzoo's, for the configs under ``configs/*/torchvision/``.

Two things change besides the names:

* **Class order.** torchvision puts the background at index 0 of its ``num_classes`` outputs;
  rcnnzoo puts it last (see :mod:`rcnnzoo.modeling.roi_heads.fast_rcnn`), has no background box
  deltas and no background mask. So the classifier's rows ``[0, 1 .. K]`` become ``[1 .. K, 0]``,
  the box regressor's background group of 4 rows is dropped, and so is the mask predictor's
  background channel. torchvision class ``c`` (c >= 1) becomes rcnnzoo class ``c - 1``.
* **BatchNorm bookkeeping.** ``num_batches_tracked`` has no counterpart in FrozenBN and is dropped.

Both the current torchvision layout (``rpn.head.conv.0.0.weight``, ``fpn.inner_blocks.0.0.weight``,
``mask_head.0.0.weight``) and the older one (``rpn.head.conv.weight``, ``fpn.inner_blocks.0.weight``,
``mask_head.mask_fcn1.weight``) are accepted. A key that no rule maps is an error, so that a
layout this module does not know fails loudly instead of leaving weights at their initialization.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

import torch

__all__ = ["ConversionError", "TORCHVISION_ARCHS", "convert_torchvision_state_dict"]

TORCHVISION_ARCHS: dict[str, str] = {
    "fasterrcnn_resnet50_fpn": "COCO-Detection/torchvision/fasterrcnn_resnet50_fpn.py",
    "maskrcnn_resnet50_fpn": "COCO-InstanceSegmentation/torchvision/maskrcnn_resnet50_fpn.py",
}
"""Supported torchvision builder names -> the shipped config whose model takes the converted weights."""


class ConversionError(ValueError):
    """A state dict that does not have the layout of the architecture it was converted as."""


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


_Rule = tuple[re.Pattern[str], str | None, Callable[[torch.Tensor], torch.Tensor] | None]


def _rule(
    pattern: str, target: str | None, transform: Callable[[torch.Tensor], torch.Tensor] | None = None
) -> _Rule:
    return re.compile(pattern), target, transform


def _mask_conv_index(match: re.Match[str]) -> str:
    # torchvision's conv i (0-based) is at index 2i of rcnnzoo's conv + ReLU sequence
    return str(2 * int(match.group(1)))


# (pattern, replacement or None to drop, tensor transform); the first matching rule applies.
_RULES: list[_Rule] = [
    _rule(r"^backbone\.body\..*\.num_batches_tracked$", None),
    _rule(r"^backbone\.body\.(.+)$", r"backbone.bottom_up.\1"),
    _rule(r"^backbone\.fpn\.inner_blocks\.(\d+)\.(?:0\.)?(weight|bias)$", r"backbone.lateral_convs.\1.0.\2"),
    _rule(r"^backbone\.fpn\.layer_blocks\.(\d+)\.(?:0\.)?(weight|bias)$", r"backbone.output_convs.\1.0.\2"),
    _rule(r"^rpn\.head\.conv\.(?:0\.0\.)?(weight|bias)$", r"proposal_generator.head.conv.0.\1"),
    _rule(r"^rpn\.head\.cls_logits\.(weight|bias)$", r"proposal_generator.head.objectness_logits.\1"),
    _rule(r"^rpn\.head\.bbox_pred\.(weight|bias)$", r"proposal_generator.head.anchor_deltas.\1"),
    _rule(r"^roi_heads\.box_head\.fc6\.(weight|bias)$", r"roi_heads.box_head.fcs.0.\1"),
    _rule(r"^roi_heads\.box_head\.fc7\.(weight|bias)$", r"roi_heads.box_head.fcs.2.\1"),
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
    _rule(r"^roi_heads\.mask_predictor\.conv5_mask\.(weight|bias)$", r"roi_heads.mask_head.deconv.\1"),
    _rule(
        r"^roi_heads\.mask_predictor\.mask_fcn_logits\.(weight|bias)$",
        r"roi_heads.mask_head.predictor.\1",
        _drop_background,
    ),
]

_MASK_CONV = re.compile(r"^roi_heads\.mask_head\.(?:(\d+)\.0|mask_fcn(\d+))\.(weight|bias)$")


def _rename(key: str) -> tuple[str | None, Callable[[torch.Tensor], torch.Tensor] | None] | None:
    """``(new key or None to drop, transform)``, or ``None`` when no rule knows ``key``."""
    m = _MASK_CONV.match(key)
    if m:
        index = int(m.group(1)) if m.group(1) is not None else int(m.group(2)) - 1
        return f"roi_heads.mask_head.convs.{2 * index}.{m.group(3)}", None
    for pattern, target, transform in _RULES:
        if pattern.match(key):
            return (pattern.sub(target, key) if target is not None else None), transform
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
    if arch not in TORCHVISION_ARCHS:
        raise ConversionError(
            f"Unsupported torchvision arch {arch!r}; supported: {', '.join(TORCHVISION_ARCHS)}"
        )
    has_masks = arch.startswith("maskrcnn")
    out: dict[str, torch.Tensor] = {}
    unknown: list[str] = []
    for key, value in state_dict.items():
        renamed = _rename(key)
        is_mask_key = key.startswith(("roi_heads.mask_head.", "roi_heads.mask_predictor."))
        if renamed is None or (is_mask_key and not has_masks):
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
