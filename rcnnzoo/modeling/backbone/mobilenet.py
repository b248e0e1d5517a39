"""MobileNetV3-Large (Howard et al., 2019) on torchvision's ``mobilenet_v3_large().features``.

Keys are torchvision's ``features.{i}.*``, so its ImageNet checkpoint loads as is (minus
``classifier.*``). Outputs are named by stride, each the last block at that stride:

===========  ==============  ======  ========
name         module          stride  channels
===========  ==============  ======  ========
s2           features.1      2       16
s4           features.3      4       24
s8           features.6      8       40
s16          features.12     16      112
s32          features.16     32      960
s32_first    features.13     32      160
===========  ==============  ======  ========

``("s16", "s32")`` (the default) gives FPN levels p4, p5 (+ p6). Note that torchvision's
``fasterrcnn_mobilenet_v3_large_fpn`` taps ``features.13`` and ``features.16`` instead: its
"C4" is the output of the first *strided* block of the last stage, so both of its FPN inputs
have stride 32 (160 and 960 channels). ``s32_first`` exposes that tap; :class:`FPN` takes it
together with ``s32`` when given ``output_names`` (see
``configs/COCO-Detection/torchvision/fasterrcnn_mobilenet_v3_large_fpn.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torch
from torch import nn
from torchvision.models import mobilenet_v3_large

from rcnnzoo.layers import FrozenBatchNorm2d, ShapeSpec, get_norm

from .backbone import BACKBONE_REGISTRY, Backbone
from .resnet import freeze_module

__all__ = ["MobileNetV3"]

# MobileNetV3's ImageNet training uses BN eps 1e-3 (torchvision's default for this family), so
# its statistics are only reproduced with that eps.
_BN_EPS = 1e-3
_BN_MOMENTUM = 0.01


def _norm_factory(norm: str, eps: float = _BN_EPS) -> Callable[[int], nn.Module]:
    if norm == "FrozenBN":
        return partial(FrozenBatchNorm2d, eps=eps)
    if norm == "BN":
        return partial(nn.BatchNorm2d, eps=eps, momentum=_BN_MOMENTUM)
    if norm == "SyncBN":
        return partial(nn.SyncBatchNorm, eps=eps, momentum=_BN_MOMENTUM)
    if not norm:
        raise ValueError("MobileNetV3 needs a norm ('FrozenBN', 'BN', 'SyncBN' or 'GN'), got ''")
    get_norm(norm, 16)  # fail now, with the valid names, on an unknown norm
    return lambda channels: get_norm(norm, channels)


def _stage_starts(features: nn.Sequential) -> list[int]:
    """Indices where torchvision's ``_mobilenet_extractor`` puts stage boundaries:
    the stem, every strided block (``_is_cn``) and the last conv. [0, 2, 4, 7, 13, 16] here."""
    strided = [i for i, block in enumerate(features) if getattr(block, "_is_cn", False)]
    return [0, *strided, len(features) - 1]


def _taps(features: nn.Sequential) -> dict[str, tuple[int, ShapeSpec]]:
    """Output name -> (index in ``features``, shape), computed from the built blocks."""
    taps: dict[str, tuple[int, ShapeSpec]] = {}
    stride = 2  # the stem conv
    for i, block in enumerate(features):
        if i > 0 and getattr(block, "_is_cn", False):
            stride *= 2
            if stride == 32:
                taps["s32_first"] = (i, ShapeSpec(channels=block.out_channels, stride=stride))
        if i > 0:  # later blocks at the same stride overwrite: each name is its stage's last block
            taps[f"s{stride}"] = (i, ShapeSpec(channels=block.out_channels, stride=stride))
    return taps


@BACKBONE_REGISTRY.register()
class MobileNetV3(Backbone):
    """MobileNetV3-Large returning any of ``s2, s4, s8, s16, s32, s32_first`` (see the module table).

    Blocks after the last requested output are not built.
    """

    def __init__(
        self,
        *,
        out_features: tuple[str, ...] | list[str] = ("s16", "s32"),
        norm: str = "FrozenBN",
        freeze_at: int = 3,
        bn_eps: float = _BN_EPS,
    ) -> None:
        """
        Args:
            out_features: names to return (see the module table).
            norm: ``"FrozenBN"`` (ImageNet fine-tuning), ``"BN"``, ``"SyncBN"`` or ``"GN"``.
            freeze_at: how many of torchvision's 6 stages to freeze, from the input; equal to
                ``6 - trainable_backbone_layers`` of torchvision's detection builders. The default 3
                freezes ``features.0`` .. ``features.6`` (up to stride 8), as torchvision does.
            bn_eps: the BatchNorm epsilon (BN, SyncBN, FrozenBN). 1e-3 is the ImageNet classifier's;
                torchvision's detection builders pass their own norm layer and so get 1e-5.
        """
        super().__init__()
        features = mobilenet_v3_large(weights=None, norm_layer=_norm_factory(norm, bn_eps)).features
        taps = _taps(features)
        if isinstance(out_features, str) or not out_features or set(out_features) - set(taps):
            raise ValueError(
                f"MobileNetV3 out_features must be a non-empty subset of {list(taps)}, got {out_features!r}"
            )
        stage_starts = _stage_starts(features)
        if not 0 <= freeze_at <= len(stage_starts):
            raise ValueError(f"MobileNetV3 freeze_at must be in 0..{len(stage_starts)}, got {freeze_at}")

        by_index = sorted((taps[n][0], n) for n in set(out_features))
        self.features = features[: by_index[-1][0] + 1]  # slicing keeps torchvision's indices as keys
        self._taps = {index: name for index, name in by_index}
        self._shapes = {name: taps[name][1] for _, name in by_index}
        freeze_before = [*stage_starts, len(features)][freeze_at]
        for i in range(min(freeze_before, len(self.features))):
            self.features[i] = freeze_module(self.features[i])

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """
        Args:
            x (Tensor[N, 3, H, W]): normalized images.

        Returns:
            name -> Tensor[N, C, ceil(H / stride), ceil(W / stride)].
        """
        outputs = {}
        for i, block in enumerate(self.features):
            x = block(x)
            if i in self._taps:
                outputs[self._taps[i]] = x
        return outputs

    def output_shape(self) -> dict[str, ShapeSpec]:
        return dict(self._shapes)
