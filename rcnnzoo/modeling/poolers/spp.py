"""Spatial pyramid pooling of RoIs (He et al. 2014, "SPPnet"): one flat vector per window."""

from __future__ import annotations

import torch
from torch import nn
from torchvision.ops import roi_pool

from rcnnzoo.layers import ShapeSpec
from rcnnzoo.structures import Boxes

from .base import ROI_POOLER_REGISTRY, convert_boxes_to_rois

__all__ = ["SPPPooler", "project_boxes_to_cells", "spp_bin_windows"]


def project_boxes_to_cells(boxes: torch.Tensor, scale: float, height: int, width: int) -> torch.Tensor:
    """SPPnet's mapping of image windows to feature-map cells (its appendix, "Mapping a Window").

    The left/top edge goes to cell ``floor(x * scale) + 1``, the right/bottom edge to
    ``ceil(x * scale) - 1``, counting cells from 0: the cells ``i`` with ``i / scale`` strictly
    inside the box, which the paper derives by placing cell ``i``'s receptive-field centre at image
    coordinate ``i / scale`` (its networks pad each layer by ``floor(k / 2)``). We keep the formula
    as it is. On VGG16's conv5_3 (2x2 pools) cell ``i`` is really centred at ``16 i + 8``, so the
    window holds the cells whose true centres lie in the box moved by half a stride right and down.

    Deviation: a box with no multiple of the stride strictly inside it (always one narrower than
    the stride) gets an empty window from the formula; here it gets the one cell nearest its
    centre, ``floor(centre * scale + 0.5)``. Windows are clipped to the map.

    Args:
        boxes (Tensor[R, 4]): XYXY in input-image pixels.
        scale: 1 / stride of the feature map (1/16 for conv5_3 or res4).
        height, width: size of the feature map, in cells.
    Returns:
        Tensor[R, 4] int64: (x_first, y_first, x_last, y_last), inclusive cell indices.
    """
    scaled = boxes.to(torch.float32) * scale
    first = torch.floor(scaled[:, :2]).long() + 1
    last = torch.ceil(scaled[:, 2:]).long() - 1
    centre = torch.floor((scaled[:, :2] + scaled[:, 2:]) / 2 + 0.5).long()
    empty = last < first
    first = torch.where(empty, centre, first)
    last = torch.where(empty, centre, last)
    x = torch.stack([first[:, 0], last[:, 0]], dim=1).clamp(0, width - 1)
    y = torch.stack([first[:, 1], last[:, 1]], dim=1).clamp(0, height - 1)
    return torch.stack([x[:, 0], y[:, 0], x[:, 1], y[:, 1]], dim=1)


def spp_bin_windows(cells: torch.Tensor, level: int) -> torch.Tensor:
    """The ``level x level`` bins of each window: bin ``i`` of a window of ``a`` cells starting at
    cell ``s`` spans cells ``s + floor(i a / n)`` to ``s + ceil((i + 1) a / n) - 1`` (the paper's
    floor/ceil bin edges, so neighbouring bins may share a cell when ``n`` does not divide ``a``).

    Computed in integers, so exact for any size: torchvision's ``roi_pool`` with an ``n x n``
    output computes the same edges in the feature dtype, and in float32 its last bin already
    overshoots by a cell for some sizes (e.g. 57 cells in 7 bins).

    Args:
        cells (Tensor[R, 4] int64): inclusive windows from :func:`project_boxes_to_cells`.
    Returns:
        Tensor[R, level * level, 4] int64: inclusive (x_first, y_first, x_last, y_last) of each bin,
        bins in row-major order (row = y).
    """
    i = torch.arange(level, device=cells.device)
    size = cells[:, 2:] - cells[:, :2] + 1  # (R, 2) as (w, h)
    start = cells[:, None, :2] + (i[None, :, None] * size[:, None, :]) // level  # (R, n, 2)
    end = cells[:, None, :2] - (-(i[None, :, None] + 1) * size[:, None, :]) // level - 1  # ceil via floor
    x0, x1 = start[..., 0][:, None, :].expand(-1, level, -1), end[..., 0][:, None, :].expand(-1, level, -1)
    y0, y1 = start[..., 1][:, :, None].expand(-1, -1, level), end[..., 1][:, :, None].expand(-1, -1, level)
    return torch.stack([x0, y0, x1, y1], dim=-1).reshape(len(cells), level * level, 4)


@ROI_POOLER_REGISTRY.register()
class SPPPooler(nn.Module):
    """SPPnet's spatial pyramid pooling of each RoI on one feature map.

    Every RoI is projected onto the map (:func:`project_boxes_to_cells`), and for each pyramid
    level ``n`` its window is max-pooled into ``n x n`` bins (:func:`spp_bin_windows`); the bins
    of all levels are flattened and concatenated, so any box size gives the same length
    ``C * sum(n * n)``: 50 bins per channel for the paper's detection pyramid (1, 2, 3, 6),
    12800-d on ZF-5's conv5, 25600-d on VGG16's conv5_3.

    The max over each bin is torchvision's ``roi_pool`` with a 1x1 output on the bin's own cell
    window, so forward and backward run in its kernels on any device.

    Output layout: for each level in order, ``Tensor[R, C, n, n]`` flattened as ``torch.flatten``
    does (channel-major), then concatenated; ``output_shape`` reports it as a flat ShapeSpec
    (channels only), which the FC box heads (``FastRCNNConvFCHead`` without convs,
    ``VGG16BoxHead``) read as their input size. Heads that need a spatial map (convs, res5) cannot
    follow it.

    Args:
        levels: bins per side of each pyramid level, e.g. (1, 2, 3, 6) (the paper's detection
            setting) or (1, 2, 4).
        scales: 1 / stride of the one input map, filled in by the RoI heads (e.g. [1/16]).
    """

    def __init__(self, *, levels: tuple[int, ...] | list[int] = (1, 2, 3, 6), scales: list[float]):
        super().__init__()
        if len(scales) != 1:
            raise ValueError(
                f"SPPPooler pools one feature map (e.g. conv5 or res4), got {len(scales)} scales {list(scales)}"
            )
        if not levels or any(int(n) < 1 for n in levels):
            raise ValueError(f"SPPPooler levels must be positive bin counts, got {levels}")
        self.levels = tuple(int(n) for n in levels)
        self.scale = float(scales[0])
        self.num_bins = sum(n * n for n in self.levels)

    def output_shape(self, channels: int) -> ShapeSpec:
        """A flat feature of ``channels * sum(n * n)`` values per RoI."""
        return ShapeSpec(channels=channels * self.num_bins)

    def forward(self, features: list[torch.Tensor], boxes: list[Boxes]) -> torch.Tensor:
        """
        Args:
            features: one Tensor[N, C, H, W].
            boxes: per image, the RoIs in input-image pixels.
        Returns:
            Tensor[R, C * sum(n * n)], R the total number of boxes, in image order.
        """
        if len(features) != 1:
            raise ValueError(f"SPPPooler pools one feature map, got {len(features)}")
        x = features[0]
        rois = convert_boxes_to_rois(boxes)
        cells = project_boxes_to_cells(rois[:, 1:], self.scale, x.shape[2], x.shape[3])
        bins = torch.cat([spp_bin_windows(cells, n) for n in self.levels], dim=1)  # (R, B, 4)
        image_index = rois[:, :1].long()[:, None, :].expand(-1, self.num_bins, 1)
        bin_rois = torch.cat([image_index, bins], dim=2).reshape(-1, 5).to(x.dtype)
        # spatial_scale 1 on integer cell corners: roi_pool's rounding is exact and its one bin
        # spans exactly cells first..last (integers stay exact in fp16 up to 2048, bf16 up to 256 cells)
        pooled = roi_pool(x, bin_rois, (1, 1), spatial_scale=1.0).view(len(rois), self.num_bins, x.shape[1])
        per_level = pooled.split([n * n for n in self.levels], dim=1)
        return torch.cat([p.transpose(1, 2).flatten(1) for p in per_level], dim=1)
