"""ShapeSpec: what a module promises about a feature map it outputs."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ShapeSpec:
    """Shape of a feature map, minus the batch and spatial sizes that vary per input.

    Attributes:
        channels: number of channels C.
        stride: the feature map's stride w.r.t. the input image (e.g. 4 for ``p2``).
        height, width: fixed spatial size, for outputs that have one (pooled RoI features).
    """

    channels: int | None = None
    stride: int | None = None
    height: int | None = None
    width: int | None = None
