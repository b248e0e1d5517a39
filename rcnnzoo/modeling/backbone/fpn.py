"""Feature Pyramid Network (Lin et al., 2017) over any :class:`Backbone`.

Outputs are named ``p{log2(stride)}``: over ResNet's res2..res5 they are p2..p5 (strides 4..32),
plus p6 (max pool, Faster/Mask R-CNN) or p6, p7 (RetinaNet) from the top block. All have
``out_channels`` channels. Input channels and strides are read from ``bottom_up.output_shape()``.

Parameter names and their torchvision counterparts (``torchvision.ops.FeaturePyramidNetwork``):
``lateral_convs.{i}.0`` <-> ``inner_blocks.{i}.0`` and ``output_convs.{i}.0`` <-> ``layer_blocks.{i}.0``,
with ``i`` counted from the finest level; ``bottom_up.*`` <-> ``body.*``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from rcnnzoo.layers import ShapeSpec, get_norm

from .backbone import BACKBONE_REGISTRY, Backbone

__all__ = ["FPN", "LastLevelMaxPool", "LastLevelP6P7"]


def c2_xavier_fill(conv: nn.Conv2d) -> None:
    """Caffe2's "XavierFill" as used by the FPN/RetinaNet papers' code: uniform with
    bound sqrt(3 / fan_in) (kaiming_uniform with a=1), zero bias."""
    nn.init.kaiming_uniform_(conv.weight, a=1)
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)


def _conv_norm(in_channels: int, out_channels: int, kernel_size: int, norm: str) -> nn.Sequential:
    """Conv (bias only without a norm) followed by the optional norm; keys ``0.*`` and ``1.*``."""
    conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=not norm)
    c2_xavier_fill(conv)
    norm_layer = get_norm(norm, out_channels)
    return nn.Sequential(conv) if norm_layer is None else nn.Sequential(conv, norm_layer)


class LastLevelMaxPool(nn.Module):
    """p{n+1} = max_pool(p{n}, kernel 1, stride 2): a free extra level for large RPN anchors
    (detectron2 and torchvision's Faster/Mask R-CNN FPN)."""

    num_levels = 1

    def forward(self, coarsest_c: torch.Tensor, coarsest_p: torch.Tensor) -> list[torch.Tensor]:
        """Args: coarsest_c (unused), coarsest_p (Tensor[N, C, h, w]). Returns [Tensor[N, C, ceil(h/2), ceil(w/2)]]."""
        return [F.max_pool2d(coarsest_p, kernel_size=1, stride=2)]


class LastLevelP6P7(nn.Module):
    """RetinaNet's extra levels: p6 = conv3x3/s2(C5), p7 = conv3x3/s2(relu(p6)).

    As in the RetinaNet paper (and detectron2), p6 is computed from the backbone's coarsest
    feature C5, not from p5.
    """

    num_levels = 2

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.p6 = nn.Conv2d(in_channels, out_channels, 3, stride=2, padding=1)
        self.p7 = nn.Conv2d(out_channels, out_channels, 3, stride=2, padding=1)
        for conv in (self.p6, self.p7):
            c2_xavier_fill(conv)

    def forward(self, coarsest_c: torch.Tensor, coarsest_p: torch.Tensor) -> list[torch.Tensor]:
        """Args: coarsest_c (Tensor[N, Cin, h, w]), coarsest_p (unused). Returns [p6, p7]."""
        p6 = self.p6(coarsest_c)
        return [p6, self.p7(F.relu(p6))]


def _build_top_block(top_block: str | None, in_channels: int, out_channels: int) -> nn.Module | None:
    if top_block is None:
        return None
    if top_block == "maxpool":
        return LastLevelMaxPool()
    if top_block == "p6p7":
        return LastLevelP6P7(in_channels, out_channels)
    raise ValueError(f"Unknown FPN top_block {top_block!r}; valid: 'maxpool', 'p6p7' or None")


def _level(stride: int | None, name: str) -> int:
    if stride is None or stride < 1 or 2 ** round(math.log2(stride)) != stride:
        raise ValueError(f"FPN needs power-of-two strides; input feature {name!r} has stride {stride}")
    return round(math.log2(stride))


@BACKBONE_REGISTRY.register()
class FPN(Backbone):
    """A top-down pyramid with lateral connections on top of ``bottom_up``.

    For each input level (coarse to fine): ``lateral = conv1x1(c)``, ``merged = lateral +
    upsample_nearest(merged_coarser)``, ``p = conv3x3(merged)``. The top block then appends
    coarser levels.

    Example (in a lazy config)::

        L(FPN)(bottom_up=L(ResNet)(depth=50), in_features=["res2", "res3", "res4", "res5"])
    """

    def __init__(
        self,
        *,
        bottom_up: Backbone,
        in_features: list[str] | tuple[str, ...],
        out_channels: int = 256,
        norm: str = "",
        top_block: str | None = "maxpool",
        fuse: str = "sum",
        output_names: list[str] | tuple[str, ...] | None = None,
    ) -> None:
        """
        Args:
            bottom_up: the backbone whose outputs ``in_features`` feed the pyramid.
            in_features: names of ``bottom_up`` outputs; their strides must be distinct powers of
                two, each level twice the previous one (any order; sorted by stride).
            out_channels: channels of every pyramid level.
            norm: norm after each lateral and output conv ("" for none, then the convs have a bias).
            top_block: ``"maxpool"`` (p6 by subsampling the coarsest level), ``"p6p7"``
                (RetinaNet convs from the coarsest input feature) or ``None``.
            fuse: how a lateral joins the upsampled coarser level: ``"sum"`` or ``"avg"``.
            output_names: names of the outputs, finest first, top-block levels included; ``None``
                names them ``p{log2(stride)}``. With names given, neighbouring inputs may also share
                a stride (the coarser one's output is then added unresized): torchvision's
                MobileNetV3 FPN taps two stride-32 blocks, whose ``p5`` names would collide.
        """
        super().__init__()
        if fuse not in ("sum", "avg"):
            raise ValueError(f"Unknown FPN fuse {fuse!r}; valid: 'sum', 'avg'")
        self.bottom_up = bottom_up
        self.in_features, in_shapes = self._check_inputs(bottom_up, in_features, output_names is not None)
        self._fuse = fuse
        self.lateral_convs = nn.ModuleList(_conv_norm(s.channels, out_channels, 1, norm) for s in in_shapes)
        self.output_convs = nn.ModuleList(_conv_norm(out_channels, out_channels, 3, norm) for _ in in_shapes)
        self.top_block = _build_top_block(top_block, in_shapes[-1].channels, out_channels)

        levels = [_level(s.stride, n) for n, s in zip(self.in_features, in_shapes)]
        levels += [levels[-1] + k + 1 for k in range(getattr(self.top_block, "num_levels", 0))]
        names = [f"p{lv}" for lv in levels] if output_names is None else list(output_names)
        if len(names) != len(levels) or len(set(names)) != len(names):
            raise ValueError(f"FPN output_names must be {len(levels)} distinct names, got {output_names!r}")
        self._out_shapes = {n: ShapeSpec(channels=out_channels, stride=2**lv) for n, lv in zip(names, levels)}
        # The top-down sums need every input level to be exactly 2x its finer neighbour; the top
        # block's strided ops accept any size, so padding to the coarsest input stride suffices.
        self._size_divisibility = max(in_shapes[-1].stride, bottom_up.size_divisibility)

    @staticmethod
    def _check_inputs(
        bottom_up: Backbone, in_features: list[str] | tuple[str, ...], allow_same_stride: bool = False
    ) -> tuple[list[str], list[ShapeSpec]]:
        """Sort ``in_features`` fine to coarse (stable: inputs of one stride keep their order) and
        check them against ``bottom_up.output_shape()``."""
        shapes = bottom_up.output_shape()
        missing = [n for n in in_features if n not in shapes]
        if isinstance(in_features, str) or not in_features or missing:
            raise ValueError(
                f"FPN in_features must be a non-empty list of {type(bottom_up).__name__} outputs "
                f"{list(shapes)}; got {in_features!r}"
            )
        names = sorted(in_features, key=lambda n: shapes[n].stride)
        levels = [_level(shapes[n].stride, n) for n in names]
        steps = (0, 1) if allow_same_stride else (1,)
        if any(b - a not in steps for a, b in zip(levels, levels[1:])):
            raise ValueError(
                "FPN in_features must have strides doubling level to level"
                + (" (or equal)" if allow_same_stride else " (equal ones need output_names)")
                + ", got "
                + ", ".join(f"{n}: {shapes[n].stride}" for n in names)
            )
        return names, [shapes[n] for n in names]

    @property
    def size_divisibility(self) -> int:
        """The coarsest *input* stride (32 over res2..res5), as in detectron2: inputs padded to it
        give p2..p5 of exactly H/stride; top-block levels (p6, p7) are ceil(H/stride)."""
        return self._size_divisibility

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """
        Args:
            x (Tensor[N, 3, H, W]): normalized images, H and W multiples of ``size_divisibility``.

        Returns:
            ``p{l}`` -> Tensor[N, out_channels, H / 2**l, W / 2**l], finest level first.
        """
        features = self.bottom_up(x)
        inputs = [features[n] for n in self.in_features]
        merged = self.lateral_convs[-1](inputs[-1])
        results = [self.output_convs[-1](merged)]
        for i in range(len(inputs) - 2, -1, -1):
            lateral = self.lateral_convs[i](inputs[i])
            # size= rather than scale_factor=2 so unpadded odd sizes still line up
            top_down = F.interpolate(merged, size=lateral.shape[-2:], mode="nearest")
            merged = lateral + top_down if self._fuse == "sum" else (lateral + top_down) / 2
            results.insert(0, self.output_convs[i](merged))
        if self.top_block is not None:
            results.extend(self.top_block(inputs[-1], results[-1]))
        return dict(zip(self._out_shapes, results))

    def output_shape(self) -> dict[str, ShapeSpec]:
        return dict(self._out_shapes)
