"""Small reusable layers and shape descriptions."""

from .batch_norm import FrozenBatchNorm2d, get_norm
from .mask_ops import paste_masks_in_image
from .nms import batched_nms_topk
from .roi_align import roi_align
from .shape_spec import ShapeSpec

__all__ = [
    "FrozenBatchNorm2d",
    "ShapeSpec",
    "batched_nms_topk",
    "get_norm",
    "paste_masks_in_image",
    "roi_align",
]
