"""RoIAlign (He et al. 2017): bilinear sampling without quantizing the RoI."""

from __future__ import annotations

import torch

from rcnnzoo.layers import roi_align

from .base import ROI_POOLER_REGISTRY, MultiLevelPooler

__all__ = ["RoIAlign"]


@ROI_POOLER_REGISTRY.register()
class RoIAlign(MultiLevelPooler):
    """RoIAlign (:func:`rcnnzoo.layers.roi_align`, torchvision's numbers), single- or multi-level.

    Args:
        sampling_ratio: bilinear samples per bin side; 0 adapts it to the RoI size
            (torchvision's default 2 for its detection models, detectron2's 0).
        aligned: shift boxes by -0.5 pixel so pixel centers line up (detectron2's
            "ROIAlignV2"); ``False`` reproduces the original Mask R-CNN and torchvision.
    """

    def __init__(self, *, sampling_ratio: int = 0, aligned: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.sampling_ratio = sampling_ratio
        self.aligned = aligned

    def pool_level(self, x: torch.Tensor, rois: torch.Tensor, scale: float) -> torch.Tensor:
        return roi_align(
            x, rois, self.output_size, spatial_scale=scale, sampling_ratio=self.sampling_ratio, aligned=self.aligned
        )
