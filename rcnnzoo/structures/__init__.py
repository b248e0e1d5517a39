"""Data structures shared by data, models and evaluation."""

from .boxes import Boxes, BoxMode, pairwise_ioa, pairwise_iou
from .image_list import ImageList
from .instances import Instances
from .masks import BitMasks, PolygonMasks

__all__ = [
    "BitMasks",
    "Boxes",
    "BoxMode",
    "ImageList",
    "Instances",
    "PolygonMasks",
    "pairwise_ioa",
    "pairwise_iou",
]
