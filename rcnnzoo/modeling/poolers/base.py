"""Pooling a fixed-size feature for every RoI, from one or several feature levels."""

from __future__ import annotations

import math

import torch
from torch import nn

from rcnnzoo.layers import ShapeSpec
from rcnnzoo.structures import Boxes
from rcnnzoo.utils.registry import Registry

__all__ = ["ROI_POOLER_REGISTRY", "MultiLevelPooler", "assign_boxes_to_levels", "convert_boxes_to_rois"]

ROI_POOLER_REGISTRY = Registry("ROI_POOLER")
ROI_POOLER_REGISTRY.__doc__ = """RoI poolers: RoIPool, RoIAlign, SPP.

Each is built with ``scales`` (1 / stride of each input level, inferred by the RoI heads)
and called as ``pooler(features: list[Tensor[N, C, Hl, Wl]], boxes: list[Boxes])`` returning
Tensor[R, C, *output_shape].
"""


def convert_boxes_to_rois(boxes: list[Boxes]) -> torch.Tensor:
    """Tensor[R, 5]: ``(batch_index, x0, y0, x1, y1)`` rows, the layout torchvision.ops expects."""
    tensors = [b.tensor for b in boxes]
    cat = torch.cat(tensors, dim=0)
    index = torch.repeat_interleave(
        torch.arange(len(tensors), device=cat.device, dtype=cat.dtype),
        torch.tensor([len(t) for t in tensors], device=cat.device),
    )
    return torch.cat([index[:, None], cat], dim=1)


def assign_boxes_to_levels(
    boxes: torch.Tensor, min_level: int, max_level: int, canonical_box_size: float, canonical_level: int
) -> torch.Tensor:
    """The FPN paper's Eqn. 1: ``k = floor(k0 + log2(sqrt(area) / 224))``, clamped.

    Args:
        boxes (Tensor[R, 4]).
    Returns:
        Tensor[R] int64: level index counted from ``min_level`` (0 = finest level).
    """
    sizes = torch.sqrt((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))
    # the epsilon keeps a box of exactly canonical size at the canonical level despite rounding
    levels = torch.floor(canonical_level + torch.log2(sizes / canonical_box_size + 1e-8))
    return levels.clamp(min=min_level, max=max_level).to(torch.int64) - min_level


class MultiLevelPooler(nn.Module):
    """Base class: routes each box to one level, then pools with :meth:`pool_level`.

    Args:
        output_size: (h, w) of the pooled feature, or one int for both.
        scales: 1 / stride of each input level, finest first, e.g. (1/4, 1/8, 1/16, 1/32).
        canonical_box_size, canonical_level: the FPN level assignment (224 px -> level 4).
    """

    def __init__(
        self,
        *,
        output_size: int | tuple[int, int],
        scales: list[float],
        canonical_box_size: float = 224.0,
        canonical_level: int = 4,
    ):
        super().__init__()
        if isinstance(output_size, int):
            output_size = (output_size, output_size)
        self.output_size = tuple(int(s) for s in output_size)
        self.scales = [float(s) for s in scales]
        levels = [-math.log2(s) for s in self.scales]
        if any(abs(lv - round(lv)) > 1e-6 for lv in levels):
            raise ValueError(f"Pooler scales must be powers of 1/2, got {self.scales}")
        self.min_level, self.max_level = int(round(levels[0])), int(round(levels[-1]))
        if len(self.scales) > 1 and self.max_level - self.min_level + 1 != len(self.scales):
            raise ValueError(f"Pooler scales must be consecutive powers of 1/2, got {self.scales}")
        self.canonical_box_size = canonical_box_size
        self.canonical_level = canonical_level

    def pool_level(self, x: torch.Tensor, rois: torch.Tensor, scale: float) -> torch.Tensor:
        """Pool ``rois`` (Tensor[R, 5]) from one level ``x`` (Tensor[N, C, H, W])."""
        raise NotImplementedError

    def output_shape(self, channels: int) -> ShapeSpec:
        """Shape of one pooled RoI feature, given the input channels."""
        return ShapeSpec(channels=channels, height=self.output_size[0], width=self.output_size[1])

    def forward(self, features: list[torch.Tensor], boxes: list[Boxes]) -> torch.Tensor:
        """
        Args:
            features: per level, Tensor[N, C, Hl, Wl] (same order as ``scales``).
            boxes: per image, the RoIs in input-image pixels.
        Returns:
            Tensor[R, C, out_h, out_w] with R the total number of boxes, in image order.
        """
        if len(features) != len(self.scales):
            raise ValueError(f"Pooler built for {len(self.scales)} levels got {len(features)} feature maps")
        rois = convert_boxes_to_rois(boxes).to(features[0].dtype)
        if len(self.scales) == 1:
            return self.pool_level(features[0], rois, self.scales[0])
        level_ids = assign_boxes_to_levels(
            rois[:, 1:], self.min_level, self.max_level, self.canonical_box_size, self.canonical_level
        )
        out = features[0].new_zeros((len(rois), features[0].shape[1], *self.output_size))
        if (
            features[0].dim() == 4
            and not features[0].is_contiguous()
            and features[0].is_contiguous(memory_format=torch.channels_last)
        ):
            # channels-last maps pool to channels-last RoI features: collect them in that layout
            out = out.contiguous(memory_format=torch.channels_last)
        for level, (x, scale) in enumerate(zip(features, self.scales)):
            idx = (level_ids == level).nonzero().squeeze(1)
            out.index_put_((idx,), self.pool_level(x, rois[idx], scale).to(out.dtype))
        return out
