"""RoI poolers: RoIPool, RoIAlign (single and multi-level), registered in ROI_POOLER_REGISTRY."""

from .base import ROI_POOLER_REGISTRY, MultiLevelPooler, assign_boxes_to_levels, convert_boxes_to_rois
from .roi_align import RoIAlign
from .roi_pool import RoIPool

__all__ = [
    "ROI_POOLER_REGISTRY",
    "MultiLevelPooler",
    "RoIAlign",
    "RoIPool",
    "assign_boxes_to_levels",
    "convert_boxes_to_rois",
]
