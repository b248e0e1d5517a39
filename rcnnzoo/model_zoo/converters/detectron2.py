"""detectron2 model zoo ``.pkl`` files -> rcnnzoo state dicts.

Two kinds of file, both plain pickles of numpy arrays, read with the restricted unpickler
(:func:`rcnnzoo.checkpoint.load_pickle`), never ``pickle.load``:

* **Trained detectors** (``COCO-Detection/faster_rcnn_R_50_FPN_{1x,3x}/.../model_final_*.pkl``,
  ``COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_{1x,3x}/...``): ``{"model": {name: array},
  "__author__": ...}`` with detectron2's module names. Only names change (:data:`DETECTRON2_ARCHS`
  gives the config whose model takes them):

  ================================================  ==============================================
  detectron2                                        rcnnzoo
  ================================================  ==============================================
  ``backbone.bottom_up.stem.conv1[.norm]``          ``backbone.bottom_up.conv1`` / ``.bn1``
  ``backbone.bottom_up.res{s}.{b}.conv{i}[.norm]``  ``backbone.bottom_up.layer{s-1}.{b}.conv{i}`` / ``.bn{i}``
  ``backbone.bottom_up.res{s}.{b}.shortcut[.norm]`` ``backbone.bottom_up.layer{s-1}.{b}.downsample.0`` / ``.1``
  ``backbone.fpn_lateral{s}`` / ``fpn_output{s}``   ``backbone.lateral_convs.{s-2}.0`` / ``output_convs.{s-2}.0``
  ``proposal_generator.rpn_head.conv``              ``proposal_generator.head.conv.0``
  ``proposal_generator.rpn_head.{objectness_logits,anchor_deltas}``  ``proposal_generator.head.*``
  ``roi_heads.box_head.fc{j}``                      ``roi_heads.box_head.fcs.{2(j-1)}``
  ``roi_heads.mask_head.mask_fcn{i}``               ``roi_heads.mask_head.convs.{2(i-1)}``
  ``roi_heads.{box_predictor,mask_head}.*`` (rest)  unchanged
  ================================================  ==============================================

  Class layouts already agree: detectron2's classifier has the background *last* (81 rows for
  COCO), its box regressor and mask predictor are class-specific without a background (320 rows,
  80 channels), as rcnnzoo's. FrozenBN keeps detectron2's four buffers (eps 1e-5 in both).
  Old files also carry ``anchor_generator.cell_anchors.*`` and ``pixel_mean``/``pixel_std``, which
  rcnnzoo computes or takes from the config: they are dropped.

* **MSRA ImageNet ResNets** (``ImageNetPretrained/MSRA/R-50.pkl``, ``R-101.pkl``): a bare dict of
  Caffe2 blobs (``conv1_w``, ``res_conv1_bn_{s,b}``, ``res2_0_branch2a_w``, ``res2_0_branch1_w``,
  ``fc1000_w`` ...; Detectron's detection files nest theirs under ``"blobs"``), Python 2 era, so read
  with latin-1 strings. Their BN was folded into a per-channel affine ``y = s * x + b``; as a
  FrozenBN it becomes ``weight=s, bias=b, running_mean=0, running_var=1-eps``, which makes the
  FrozenBN's ``scale = weight / sqrt(running_var + eps)`` exactly ``s`` in float32 (detectron2 uses
  ``running_var=1``, off by a factor 1/sqrt(1+1e-5)). These networks take BGR input with the mean
  subtracted and no division, and stride in the 1x1 convs (:data:`IMAGENET_BACKBONES` ``"R-50"``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from typing import IO, Any

import numpy as np
import torch

from .imagenet import IMAGENET_BACKBONES, place_backbone_weights
from .torchvision import ConversionError

__all__ = [
    "DETECTRON2_ARCHS",
    "MSRA_IMAGENET_ARCHS",
    "convert_detectron2_state_dict",
    "msra_backbone_weights",
    "read_detectron2_pkl",
]

DETECTRON2_ARCHS: dict[str, str] = {
    "faster_rcnn_R_50_FPN_1x": "COCO-Detection/faster_rcnn_R_50_FPN_1x.py",
    "faster_rcnn_R_50_FPN_3x": "COCO-Detection/faster_rcnn_R_50_FPN_3x.py",
    "mask_rcnn_R_50_FPN_1x": "COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_1x.py",
    "mask_rcnn_R_50_FPN_3x": "COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_3x.py",
}
"""detectron2 model zoo detectors -> the shipped config whose model takes the converted weights."""

MSRA_IMAGENET_ARCHS: tuple[str, ...] = tuple(
    n for n, s in IMAGENET_BACKBONES.items() if s.source == "detectron2"
)
"""detectron2's ImageNet backbones (``ImageNetPretrained/MSRA/<name>.pkl``): ``"R-50"``, ``"R-101"``."""

_BN = r"(weight|bias|running_mean|running_var)"


def _stage(m: re.Match[str], group: int = 1) -> int:
    """detectron2's ``res{s}`` is torchvision's ``layer{s-1}``."""
    return int(m.group(group)) - 1


def _fpn_level(m: re.Match[str]) -> int:
    # fpn_lateral{s} reads res{s}; rcnnzoo counts its lateral convs from the finest input, res2
    return int(m.group(1)) - 2


_Rule = tuple[re.Pattern[str], Callable[[re.Match[str]], str | None]]

# (pattern, new key from the match or None to drop); the first matching rule applies.
_DETECTOR_RULES: list[_Rule] = [
    (re.compile(r"^backbone\.bottom_up\.stem\.conv1\.weight$"), lambda m: "backbone.bottom_up.conv1.weight"),
    (
        re.compile(rf"^backbone\.bottom_up\.stem\.conv1\.norm\.{_BN}$"),
        lambda m: f"backbone.bottom_up.bn1.{m[1]}",
    ),
    (
        re.compile(r"^backbone\.bottom_up\.res([2-5])\.(\d+)\.conv([1-3])\.weight$"),
        lambda m: f"backbone.bottom_up.layer{_stage(m)}.{m[2]}.conv{m[3]}.weight",
    ),
    (
        re.compile(rf"^backbone\.bottom_up\.res([2-5])\.(\d+)\.conv([1-3])\.norm\.{_BN}$"),
        lambda m: f"backbone.bottom_up.layer{_stage(m)}.{m[2]}.bn{m[3]}.{m[4]}",
    ),
    (
        re.compile(r"^backbone\.bottom_up\.res([2-5])\.(\d+)\.shortcut\.weight$"),
        lambda m: f"backbone.bottom_up.layer{_stage(m)}.{m[2]}.downsample.0.weight",
    ),
    (
        re.compile(rf"^backbone\.bottom_up\.res([2-5])\.(\d+)\.shortcut\.norm\.{_BN}$"),
        lambda m: f"backbone.bottom_up.layer{_stage(m)}.{m[2]}.downsample.1.{m[3]}",
    ),
    (
        re.compile(r"^backbone\.fpn_lateral([2-5])\.(weight|bias)$"),
        lambda m: f"backbone.lateral_convs.{_fpn_level(m)}.0.{m[2]}",
    ),
    (
        re.compile(r"^backbone\.fpn_output([2-5])\.(weight|bias)$"),
        lambda m: f"backbone.output_convs.{_fpn_level(m)}.0.{m[2]}",
    ),
    (
        re.compile(r"^proposal_generator\.rpn_head\.conv\.(weight|bias)$"),
        lambda m: f"proposal_generator.head.conv.0.{m[1]}",
    ),
    (
        re.compile(r"^proposal_generator\.rpn_head\.(objectness_logits|anchor_deltas)\.(weight|bias)$"),
        lambda m: f"proposal_generator.head.{m[1]}.{m[2]}",
    ),
    # buffers of old checkpoints that rcnnzoo computes (anchors) or takes from the config (pixels)
    (re.compile(r"^proposal_generator\.anchor_generator\.cell_anchors\.\d+$"), lambda m: None),
    (re.compile(r"^pixel_(mean|std)$"), lambda m: None),
    (
        re.compile(r"^roi_heads\.box_head\.fc([1-9])\.(weight|bias)$"),
        lambda m: f"roi_heads.box_head.fcs.{2 * (int(m[1]) - 1)}.{m[2]}",
    ),
    (
        re.compile(r"^roi_heads\.box_predictor\.(cls_score|bbox_pred)\.(weight|bias)$"),
        lambda m: m[0],
    ),
    (
        re.compile(r"^roi_heads\.mask_head\.mask_fcn([1-9])\.(weight|bias)$"),
        lambda m: f"roi_heads.mask_head.convs.{2 * (int(m[1]) - 1)}.{m[2]}",
    ),
    (re.compile(r"^roi_heads\.mask_head\.(deconv|predictor)\.(weight|bias)$"), lambda m: m[0]),
]

# Caffe2 blob names of the MSRA ResNets -> torchvision's ResNet keys (the BN buffers are added after).
_MSRA_RULES: list[_Rule] = [
    (re.compile(r"^conv1_w$"), lambda m: "conv1.weight"),
    (re.compile(r"^res_conv1_bn_([sb])$"), lambda m: f"bn1.{_AFFINE[m[1]]}"),
    (
        re.compile(r"^res([2-5])_(\d+)_branch2([abc])_w$"),
        lambda m: f"layer{_stage(m)}.{m[2]}.conv{'abc'.index(m[3]) + 1}.weight",
    ),
    (
        re.compile(r"^res([2-5])_(\d+)_branch2([abc])_bn_([sb])$"),
        lambda m: f"layer{_stage(m)}.{m[2]}.bn{'abc'.index(m[3]) + 1}.{_AFFINE[m[4]]}",
    ),
    (re.compile(r"^res([2-5])_(\d+)_branch1_w$"), lambda m: f"layer{_stage(m)}.{m[2]}.downsample.0.weight"),
    (
        re.compile(r"^res([2-5])_(\d+)_branch1_bn_([sb])$"),
        lambda m: f"layer{_stage(m)}.{m[2]}.downsample.1.{_AFFINE[m[3]]}",
    ),
    (re.compile(r"^fc1000_[wb]$"), lambda m: None),  # the ImageNet classifier
]
_AFFINE = {"s": "weight", "b": "bias"}
_NORM_PARAM = re.compile(r"(^|\.)(bn[1-3]|downsample\.1)\.(weight|bias)$")

# detectron2's FrozenBN and rcnnzoo's ResNet FrozenBN (torchvision's default eps)
_BN_EPS = 1e-5


def _to_tensor(key: str, value: Any) -> torch.Tensor:
    """A numpy array (or tensor) from a pickle -> a tensor that owns native-endian memory."""
    if isinstance(value, torch.Tensor):
        return value
    if not isinstance(value, np.ndarray):
        raise ConversionError(f"{key} holds a {type(value).__name__}, expected a numpy array")
    if value.dtype.kind not in "fiub":
        raise ConversionError(f"{key} has dtype {value.dtype}, expected numbers")
    # a copy: arrays rebuilt from a pickle's bytes may be read-only, big-endian or strided
    return torch.from_numpy(np.array(value, dtype=value.dtype.newbyteorder("="), order="C", copy=True))


def _apply(rules: list[_Rule], key: str) -> str | None | bool:
    """The new name of ``key`` (``None``: drop it), or ``False`` when no rule matches."""
    for pattern, rename in rules:
        m = pattern.match(key)
        if m:
            return rename(m)
    return False


def _rename_all(
    state_dict: Mapping[str, Any],
    rules: list[_Rule],
    what: str,
    allowed: Callable[[str], bool] = lambda k: True,
) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    unknown: list[str] = []
    for key, value in state_dict.items():
        renamed = _apply(rules, key) if allowed(key) else False
        if renamed is False:
            unknown.append(key)
        elif renamed is not None:
            out[renamed] = _to_tensor(key, value)
    if unknown:
        raise ConversionError(
            f"{len(unknown)} keys of the checkpoint have no rcnnzoo counterpart for {what}: {sorted(unknown)[:20]}"
            + (" ..." if len(unknown) > 20 else "")
        )
    return out


def msra_backbone_weights(blobs: Mapping[str, Any], arch: str) -> dict[str, torch.Tensor]:
    """MSRA ImageNet ResNet blobs -> the keys of ``build_imagenet_backbone(arch)`` (torchvision names).

    Each ``*_bn_s``/``*_bn_b`` pair becomes a FrozenBN computing exactly ``s * x + b`` (see the
    module docstring); ``fc1000`` and ``*_momentum`` (solver state) are dropped.

    Args:
        blobs: name -> numpy array, e.g. from :func:`read_detectron2_pkl`.
        arch: one of :data:`MSRA_IMAGENET_ARCHS`.
    Raises:
        ConversionError: an unknown arch, unknown blob names (all listed), or a BN without both
            its scale and its bias.
    """
    if arch not in MSRA_IMAGENET_ARCHS:
        raise ConversionError(
            f"Unknown MSRA ImageNet arch {arch!r}; supported: {', '.join(MSRA_IMAGENET_ARCHS)}"
        )
    blobs = {k: v for k, v in blobs.items() if not k.endswith("_momentum")}
    out = _rename_all(blobs, _MSRA_RULES, f"the MSRA ImageNet {arch}")
    norms = {k.rsplit(".", 1)[0] for k in out if _NORM_PARAM.search(k)}
    for norm in sorted(norms):
        if f"{norm}.weight" not in out or f"{norm}.bias" not in out:
            raise ConversionError(f"{arch}: the affine BN {norm} needs both its _bn_s and _bn_b blobs")
        scale = out[f"{norm}.weight"]
        out[f"{norm}.running_mean"] = torch.zeros_like(scale)
        # float32(1 - eps) + eps rounds to exactly 1, so the FrozenBN's scale is exactly s
        out[f"{norm}.running_var"] = torch.full_like(scale, 1.0 - _BN_EPS)
    return out


def convert_detectron2_state_dict(state_dict: Mapping[str, Any], arch: str) -> dict[str, torch.Tensor]:
    """Rename detectron2's ``arch`` weights (numpy arrays or tensors) for the rcnnzoo model.

    Args:
        state_dict: the ``"model"`` of a detectron2 model zoo file (or the blobs of an MSRA file).
        arch: one of :data:`DETECTRON2_ARCHS` (its config's model takes the result strictly) or
            :data:`MSRA_IMAGENET_ARCHS` (then the result holds the backbone only, placed as in the
            shipped FPN configs, ``backbone.bottom_up.*``; see
            :func:`rcnnzoo.model_zoo.converters.imagenet.place_backbone_weights` for other models).
    Returns:
        a new state dict of tensors with rcnnzoo's names.
    Raises:
        ConversionError: an unsupported arch, or keys no rule maps (all are listed), e.g. a mask
            head's weights converted as a Faster R-CNN.
    """
    if arch in MSRA_IMAGENET_ARCHS:
        return place_backbone_weights(msra_backbone_weights(state_dict, arch), arch).state_dict
    if arch not in DETECTRON2_ARCHS:
        raise ConversionError(
            f"Unsupported detectron2 arch {arch!r}; supported: {', '.join([*DETECTRON2_ARCHS, *MSRA_IMAGENET_ARCHS])}"
        )
    has_masks = arch.startswith("mask_rcnn")
    return _rename_all(
        state_dict,
        _DETECTOR_RULES,
        f"detectron2's {arch}",
        allowed=lambda k: has_masks or not k.startswith("roi_heads.mask_head."),
    )


def read_detectron2_pkl(path_or_file: str | os.PathLike[str] | IO[bytes]) -> tuple[dict[str, Any], str]:
    """The weights of a detectron2 / Detectron / Caffe2 ``.pkl``, read with the restricted unpickler.

    Returns:
        ``(name -> numpy array, layout)``: layout ``"detectron2"`` for ``{"model": ...,
        "__author__": ...}`` files (names as in detectron2's modules), ``"caffe2"`` for bare blob
        dicts (ImageNet) or ``{"blobs": ...}`` (Detectron), whose ``*_momentum`` blobs are dropped.
    Raises:
        UnsafePickleError: the file references code (nothing of it ran); CheckpointError: not a
        pickle of a dict of arrays.
    """
    from rcnnzoo.checkpoint import CheckpointError, load_pickle

    name = os.fspath(path_or_file) if isinstance(path_or_file, (str, os.PathLike)) else "<stream>"
    data = load_pickle(path_or_file)
    if isinstance(data, Mapping) and isinstance(data.get("model"), Mapping) and "__author__" in data:
        weights, layout = dict(data["model"]), "detectron2"
    else:
        if isinstance(data, Mapping) and isinstance(data.get("blobs"), Mapping):
            data = data["blobs"]
        if not isinstance(data, Mapping):
            raise CheckpointError(f"{name} holds a {type(data).__name__}, not a dict of weights")
        weights = {k: v for k, v in data.items() if not str(k).endswith("_momentum")}
        layout = "caffe2"
    bad = [k for k, v in weights.items() if not isinstance(k, str) or not isinstance(v, np.ndarray)]
    if bad:
        raise CheckpointError(f"{name}: entries that are not name -> numpy array: {bad[:10]}")
    return weights, layout
