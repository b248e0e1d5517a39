"""VGG16 (Simonyan & Zisserman, 2015): the Fast/Faster R-CNN paper backbone.

``VGG16`` is torchvision's ``vgg16().features`` without its last max pool, so conv5_3 (after its
ReLU) has stride 16 and 512 channels, as in the seed system (simple-faster-rcnn-pytorch) and the
papers. Keys are torchvision's ``features.0`` .. ``features.29`` (``vgg16_bn``'s numbering when a
norm is used). ``vgg16_fc67`` is the matching fc6/fc7 box head.

========  ========================  ======  ========
name      last module (no norm)     stride  channels
========  ========================  ======  ========
conv1     features.3  (relu1_2)     1       64
conv2     features.8  (relu2_2)     2       128
conv3     features.15 (relu3_3)     4       256
conv4     features.22 (relu4_3)     8       512
conv5     features.29 (relu5_3)     16      512
========  ========================  ======  ========
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision.models.vgg import cfgs as _TV_VGG_CFGS

from rcnnzoo.layers import ShapeSpec, get_norm

from .backbone import BACKBONE_REGISTRY, Backbone
from .resnet import freeze_module

__all__ = ["VGG16", "vgg16_fc67", "VGGFc67"]

_VGG16_CFG: list[int | str] = _TV_VGG_CFGS["D"]  # 13 convs, "M" = 2x2 max pool
_BLOCKS = ("conv1", "conv2", "conv3", "conv4", "conv5")
_NUM_CONVS = sum(v != "M" for v in _VGG16_CFG)


def _make_vgg16_layers(norm: str) -> tuple[list[nn.Module], dict[str, tuple[int, int]]]:
    """torchvision's ``vgg.make_layers(cfgs["D"])`` minus the last pool, any norm.

    Returns:
        (layers, block_ends): the modules in torchvision's order and, for each ``convK`` block,
        (index of its last module, the ReLU before the pool; its channels).
    """
    layers: list[nn.Module] = []
    block_ends: dict[str, tuple[int, int]] = {}
    in_channels = 3
    for v in _VGG16_CFG[:-1]:  # drop the final pool: conv5_3 stays at stride 16
        if v == "M":
            block_ends[_BLOCKS[len(block_ends)]] = (len(layers) - 1, in_channels)
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            continue
        conv = nn.Conv2d(in_channels, int(v), kernel_size=3, padding=1)
        # torchvision's VGG init, for training without ImageNet weights
        nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
        nn.init.zeros_(conv.bias)
        norm_layer = get_norm(norm, int(v))
        layers += [conv] if norm_layer is None else [conv, norm_layer]
        layers.append(nn.ReLU(inplace=True))
        in_channels = int(v)
    block_ends["conv5"] = (len(layers) - 1, in_channels)
    return layers, block_ends


@BACKBONE_REGISTRY.register()
class VGG16(Backbone):
    """VGG16 conv layers returning any of ``conv1`` .. ``conv5`` (see the module table).

    Layers after the last requested block are not built.
    """

    def __init__(
        self,
        *,
        out_features: tuple[str, ...] | list[str] = ("conv5",),
        freeze_at: int = 4,
        norm: str = "",
    ) -> None:
        """
        Args:
            out_features: names to return, a subset of ``conv1`` .. ``conv5``.
            freeze_at: how many conv layers to freeze, counted from the input (0..13). The default
                4 freezes conv1_x and conv2_x, as the seed system and the Fast R-CNN paper do.
            norm: "" (torchvision ``vgg16``) or a norm name such as "BN" (``vgg16_bn`` layout).
        """
        super().__init__()
        if isinstance(out_features, str) or not out_features or set(out_features) - set(_BLOCKS):
            raise ValueError(
                f"VGG16 out_features must be a non-empty subset of {_BLOCKS}, got {out_features!r}"
            )
        if not 0 <= freeze_at <= _NUM_CONVS:
            raise ValueError(f"VGG16 freeze_at counts conv layers: 0..{_NUM_CONVS}, got {freeze_at}")
        self._out_features = tuple(n for n in _BLOCKS if n in out_features)
        layers, block_ends = _make_vgg16_layers(norm)
        last, _ = block_ends[self._out_features[-1]]
        self.features = nn.Sequential(*layers[: last + 1])
        self._taps = {block_ends[n][0]: n for n in self._out_features}
        self._shapes = {
            n: ShapeSpec(channels=block_ends[n][1], stride=2 ** _BLOCKS.index(n)) for n in self._out_features
        }
        self._freeze(freeze_at)

    def _freeze(self, num_convs: int) -> None:
        """Freeze every module before the (num_convs + 1)-th conv."""
        convs_seen = 0
        for idx, module in enumerate(self.features):
            if isinstance(module, nn.Conv2d):
                convs_seen += 1
            if convs_seen > num_convs:
                break
            self.features[idx] = freeze_module(module)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """
        Args:
            x (Tensor[N, 3, H, W]): normalized images.

        Returns:
            name -> Tensor[N, C, H // stride, W // stride] (max pools floor odd sizes).
        """
        outputs = {}
        for idx, layer in enumerate(self.features):
            x = layer(x)
            if idx in self._taps:
                outputs[self._taps[idx]] = x
        return outputs

    def output_shape(self) -> dict[str, ShapeSpec]:
        return dict(self._shapes)


class VGGFc67(nn.Sequential):
    """fc6 -> ReLU -> dropout -> fc7 -> ReLU -> dropout, flattening its input first.

    Children ``0`` (fc6) and ``3`` (fc7) line up with torchvision's ``classifier.0`` and
    ``classifier.3``, so ``classifier.`` -> ``<head>.`` maps the ImageNet weights (skip
    ``classifier.6``, the 1000-way classifier). Dropout slots ``2`` and ``5`` are ``Identity``
    when ``dropout == 0``.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Args: x (Tensor[R, 512, 7, 7] or Tensor[R, 25088]). Returns: Tensor[R, 4096]."""
        return super().forward(x.flatten(1))


def vgg16_fc67(*, in_features: int = 512 * 7 * 7, dropout: float = 0.0) -> VGGFc67:
    """VGG16's fc6/fc7 for the box head over 7x7 RoI-pooled conv5 features.

    Args:
        in_features: flattened RoI feature size (512 * 7 * 7 for torchvision's weights).
        dropout: dropout after fc6 and fc7; 0 (the seed system's default) disables it,
            the Fast R-CNN paper and torchvision use 0.5.

    Returns:
        A :class:`VGGFc67` mapping Tensor[R, 512, 7, 7] -> Tensor[R, 4096].
    """
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout}")

    def drop() -> nn.Module:
        return nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    fc6, fc7 = nn.Linear(in_features, 4096), nn.Linear(4096, 4096)
    for fc in (fc6, fc7):  # torchvision's VGG init for Linear layers
        nn.init.normal_(fc.weight, 0, 0.01)
        nn.init.zeros_(fc.bias)
    return VGGFc67(fc6, nn.ReLU(inplace=True), drop(), fc7, nn.ReLU(inplace=True), drop())
