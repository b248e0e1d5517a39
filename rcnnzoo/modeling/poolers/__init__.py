"""RoI poolers: RoIPool, RoIAlign (single and multi-level), SPP, registered in ROI_POOLER_REGISTRY."""

from .base import ROI_POOLER_REGISTRY, MultiLevelPooler, assign_boxes_to_levels, convert_boxes_to_rois
from .roi_align import RoIAlign
from .roi_pool import RoIPool
from .spp import SPPPooler, project_boxes_to_cells, spp_bin_windows

__all__ = [
    "ROI_POOLER_REGISTRY",
    "MultiLevelPooler",
    "RoIAlign",
    "RoIPool",
    "SPPPooler",
    "assign_boxes_to_levels",
    "convert_boxes_to_rois",
    "project_boxes_to_cells",
    "spp_bin_windows",
]
