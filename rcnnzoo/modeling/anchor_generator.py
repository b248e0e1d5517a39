"""Anchors: reference boxes tiled over every feature-map location."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from rcnnzoo.utils.registry import Registry

__all__ = ["ANCHOR_GENERATOR_REGISTRY", "DefaultAnchorGenerator", "make_cell_anchors"]

ANCHOR_GENERATOR_REGISTRY = Registry("ANCHOR_GENERATOR")


def make_cell_anchors(
    sizes: Sequence[float], aspect_ratios: Sequence[float], round_to_int: bool = False
) -> torch.Tensor:
    """The anchors of one location, centered at (0, 0).

    For each size s and aspect ratio r = h / w, the anchor has area s**2: ``w = s / sqrt(r)``,
    ``h = s * sqrt(r)``. Order: size-major, then aspect ratio (as detectron2). torchvision
    orders ratio-major and rounds to integers; ``round_to_int`` reproduces the rounding.

    Returns:
        Tensor[len(sizes) * len(aspect_ratios), 4]: XYXY anchors.
    """
    anchors = []
    for size in sizes:
        for ratio in aspect_ratios:
            w = size / math.sqrt(ratio)
            h = size * math.sqrt(ratio)
            anchors.append([-w / 2.0, -h / 2.0, w / 2.0, h / 2.0])
    out = torch.tensor(anchors, dtype=torch.float32)
    return out.round() if round_to_int else out


def _broadcast_per_level(value: Sequence, num_levels: int, name: str) -> list:
    """Accept one list for all levels (``[[32, 64]]``) or one list per level."""
    value = [list(v) for v in value]
    if len(value) == 1:
        return value * num_levels
    if len(value) != num_levels:
        raise ValueError(f"{name} has {len(value)} entries but there are {num_levels} feature levels")
    return value


@ANCHOR_GENERATOR_REGISTRY.register()
class DefaultAnchorGenerator(nn.Module):
    """Anchors for each feature level, one set per location, as in Faster R-CNN / FPN.

    Args:
        sizes: per level, the anchor sizes (sqrt of area) in input-image pixels, e.g.
            ``[[32], [64], [128], [256], [512]]`` for FPN or ``[[128, 256, 512]]`` for a
            single stride-16 map (the paper). One entry is broadcast to every level.
        aspect_ratios: per level (or one for all), the ratios h / w, e.g. ``[[0.5, 1.0, 2.0]]``.
        strides: the stride of each level; normally inferred from the backbone's output shape.
        offset: where the anchor center sits within its cell, in [0, 1): 0.0 puts it on the
            top-left corner (torchvision, detectron2's default), 0.5 in the middle.
        round_cell_anchors: round the anchors of one location to integers (torchvision).
        strides_from_grid: torchvision's spacing: each level's stride is the padded image size
            floor-divided by the level's grid size, per axis, instead of ``strides``. The two
            differ on a level coarser than the padding: p6 of an image padded to 800 x 1344 has
            13 x 21 cells, anchors 61 px apart vertically (800 // 13) and 64 horizontally. The
            padded size is taken as the first level's grid times its stride, which is exact
            when the images are padded to a multiple of that stride (FPN pads to 32).
    """

    def __init__(
        self,
        *,
        sizes: Sequence[Sequence[float]],
        aspect_ratios: Sequence[Sequence[float]] = ((0.5, 1.0, 2.0),),
        strides: Sequence[int],
        offset: float = 0.0,
        round_cell_anchors: bool = False,
        strides_from_grid: bool = False,
    ):
        super().__init__()
        if not 0.0 <= offset < 1.0:
            raise ValueError(f"offset must be in [0, 1), got {offset}")
        self.strides = [int(s) for s in strides]
        num_levels = len(self.strides)
        sizes = _broadcast_per_level(sizes, num_levels, "sizes")
        ratios = _broadcast_per_level(aspect_ratios, num_levels, "aspect_ratios")
        self.offset = offset
        self.strides_from_grid = strides_from_grid
        cells = [make_cell_anchors(s, r, round_cell_anchors) for s, r in zip(sizes, ratios)]
        for i, c in enumerate(cells):
            self.register_buffer(f"cell_anchors_{i}", c, persistent=False)
        self._cache: dict[tuple, list[torch.Tensor]] = {}

    @property
    def num_anchors(self) -> list[int]:
        """Anchors per location, for each level."""
        return [len(c) for c in self._cells()]

    def _cells(self) -> list[torch.Tensor]:
        return [getattr(self, f"cell_anchors_{i}") for i in range(len(self.strides))]

    def _level_strides(self, grid_sizes: list[tuple[int, int]]) -> list[tuple[int, int]]:
        """(stride_y, stride_x) of each level: the nominal ones, or torchvision's (see ``strides_from_grid``)."""
        if not self.strides_from_grid:
            return [(s, s) for s in self.strides]
        padded_h, padded_w = grid_sizes[0][0] * self.strides[0], grid_sizes[0][1] * self.strides[0]
        return [(padded_h // max(h, 1), padded_w // max(w, 1)) for h, w in grid_sizes]

    def _grid_anchors(self, grid_sizes: list[tuple[int, int]], device: torch.device) -> list[torch.Tensor]:
        anchors = []
        strides = self._level_strides(grid_sizes)
        for (h, w), (stride_y, stride_x), cell in zip(grid_sizes, strides, self._cells()):
            cell = cell.to(device)
            xs = (torch.arange(w, device=device, dtype=torch.float32) + self.offset) * stride_x
            ys = (torch.arange(h, device=device, dtype=torch.float32) + self.offset) * stride_y
            sy, sx = torch.meshgrid(ys, xs, indexing="ij")
            shifts = torch.stack((sx, sy, sx, sy), dim=-1).reshape(-1, 1, 4)
            # location-major, anchor-minor: matches the (N, A, H, W) -> (N, H*W*A) flattening of the head
            anchors.append((shifts + cell.view(1, -1, 4)).reshape(-1, 4))
        return anchors

    def forward(self, features: list[torch.Tensor]) -> list[torch.Tensor]:
        """
        Args:
            features: per level, Tensor[N, C, Hi, Wi].
        Returns:
            per level, Tensor[Hi * Wi * A_i, 4]: XYXY anchors in input-image pixels, shared by all images.
        """
        if len(features) != len(self.strides):
            raise ValueError(f"Got {len(features)} feature maps for {len(self.strides)} anchor levels")
        grid_sizes = [tuple(f.shape[-2:]) for f in features]
        key = (tuple(grid_sizes), features[0].device)
        if key not in self._cache:
            if len(self._cache) > 64:  # many distinct input sizes: bound the memory
                self._cache.clear()
            self._cache[key] = self._grid_anchors(grid_sizes, features[0].device)
        return self._cache[key]
