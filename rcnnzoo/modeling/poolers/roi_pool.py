"""RoIPool (Girshick 2015): max pooling over a quantized grid of the RoI."""

from __future__ import annotations

import torch
from torchvision.ops import roi_pool

from .base import ROI_POOLER_REGISTRY, MultiLevelPooler

__all__ = ["RoIPool"]


@ROI_POOLER_REGISTRY.register()
class RoIPool(MultiLevelPooler):
    """Fast R-CNN's RoI max pooling on torchvision.ops (7x7 for VGG16)."""

    def pool_level(self, x: torch.Tensor, rois: torch.Tensor, scale: float) -> torch.Tensor:
        return roi_pool(x, rois, self.output_size, spatial_scale=scale)
