"""Data structures shared by data, models and evaluation."""

from .boxes import Boxes, BoxMode, pairwise_ioa, pairwise_iou
from .image_list import ImageList
from .instances import Instances

__all__ = ["Boxes", "BoxMode", "ImageList", "Instances", "pairwise_ioa", "pairwise_iou"]
