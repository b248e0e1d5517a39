"""TinyNet: a small residual backbone for CPU quick starts and tests, trained from scratch.

No pretrained weights exist for it, so its norms train by default (``norm="BN"``).

=====  ======================================  ======  ==========
name   modules                                 stride  channels
=====  ======================================  ======  ==========
c2     stem (2 strided 3x3 convs) + stage2     4       widths[0]
c3     stage3                                  8       widths[1]
c4     stage4                                  16      widths[2]
c5     stage5                                  32      widths[3]
=====  ======================================  ======  ==========

Each stage is ``depths[i]`` torchvision ``BasicBlock`` s (two 3x3 conv-norm, identity or
1x1-projection shortcut), the first one strided (except stage2, which follows the stride-4 stem).
With the defaults, forward + backward of 8 images of 256x256 takes ~0.1 s on 2 CPU threads.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torchvision.models.resnet import BasicBlock

from rcnnzoo.layers import ShapeSpec, get_norm

from .backbone import BACKBONE_REGISTRY, Backbone

__all__ = ["TinyNet"]

_NAMES = ("c2", "c3", "c4", "c5")


def _norm_factory(norm: str) -> Callable[[int], nn.Module]:
    if not norm:
        raise ValueError("TinyNet needs a norm ('BN', 'GN', 'SyncBN' or 'FrozenBN'), got ''")
    get_norm(norm, 8)  # fail now, with the valid names, on an unknown norm
    return lambda channels: get_norm(norm, channels)


def _conv_norm_relu(
    in_channels: int, out_channels: int, stride: int, norm_layer: Callable[[int], nn.Module]
) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False),
        norm_layer(out_channels),
        nn.ReLU(inplace=True),
    )


def _stage(
    in_channels: int, out_channels: int, num_blocks: int, stride: int, norm_layer: Callable[[int], nn.Module]
) -> nn.Sequential:
    downsample = None
    if stride != 1 or in_channels != out_channels:
        downsample = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False), norm_layer(out_channels)
        )
    blocks = [BasicBlock(in_channels, out_channels, stride, downsample, norm_layer=norm_layer)]
    blocks += [BasicBlock(out_channels, out_channels, norm_layer=norm_layer) for _ in range(1, num_blocks)]
    return nn.Sequential(*blocks)


@BACKBONE_REGISTRY.register()
class TinyNet(Backbone):
    """A 4-stage residual net, ResNet-18-like but narrow and shallow; outputs ``c2`` .. ``c5``."""

    def __init__(
        self,
        *,
        in_channels: int = 3,
        widths: tuple[int, int, int, int] | list[int] = (32, 64, 128, 256),
        depths: tuple[int, int, int, int] | list[int] = (1, 1, 1, 1),
        norm: str = "BN",
        out_features: tuple[str, ...] | list[str] = _NAMES,
    ) -> None:
        """
        Args:
            in_channels: image channels.
            widths: output channels of c2..c5.
            depths: residual blocks per stage (each two 3x3 convs).
            norm: ``"BN"`` (default; batches of a few images train fine), ``"GN"``, ``"SyncBN"``
                or ``"FrozenBN"``.
            out_features: names to return, a subset of ``c2`` .. ``c5``; later stages are not built.
        """
        super().__init__()
        if len(widths) != 4 or len(depths) != 4 or min(depths) < 1 or min(widths) < 1:
            raise ValueError(
                f"TinyNet needs 4 positive widths and depths, got widths={widths}, depths={depths}"
            )
        if isinstance(out_features, str) or not out_features or set(out_features) - set(_NAMES):
            raise ValueError(
                f"TinyNet out_features must be a non-empty subset of {_NAMES}, got {out_features!r}"
            )
        norm_layer = _norm_factory(norm)
        self._out_features = tuple(n for n in _NAMES if n in out_features)
        num_stages = _NAMES.index(self._out_features[-1]) + 1

        stem_width = max(widths[0] // 2, 8)
        # Two strided 3x3 convs reach stride 4 at a fraction of a 7x7 conv + max pool's cost.
        self.stem = nn.Sequential(
            _conv_norm_relu(in_channels, stem_width, 2, norm_layer),
            _conv_norm_relu(stem_width, widths[0], 2, norm_layer),
        )
        self.stages = nn.ModuleList()
        prev = widths[0]
        for i in range(num_stages):
            self.stages.append(_stage(prev, widths[i], depths[i], 1 if i == 0 else 2, norm_layer))
            prev = widths[i]
        self._shapes = {n: ShapeSpec(channels=widths[i], stride=4 * 2**i) for i, n in enumerate(_NAMES)}
        self._init_weights()

    def _init_weights(self) -> None:
        # He init for ReLU nets; norms start as identity (their defaults).
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """
        Args:
            x (Tensor[N, in_channels, H, W]): normalized images.

        Returns:
            name -> Tensor[N, C, ceil(H / stride), ceil(W / stride)] for each requested name.
        """
        x = self.stem(x)
        outputs = {}
        for name, stage in zip(_NAMES, self.stages):
            x = stage(x)
            if name in self._out_features:
                outputs[name] = x
        return outputs

    def output_shape(self) -> dict[str, ShapeSpec]:
        return {n: self._shapes[n] for n in self._out_features}
