"""Checkpoint converters: other projects' state dicts renamed and reordered for rcnnzoo models.

* :mod:`.torchvision`: torchvision's detection models (``TORCHVISION_ARCHS``).
* :mod:`.detectron2`: detectron2's model zoo ``.pkl`` files, trained detectors (``DETECTRON2_ARCHS``)
  and MSRA ImageNet ResNets (``MSRA_IMAGENET_ARCHS``).
* :mod:`.imagenet`: ImageNet classification weights (torchvision's ``TORCHVISION_IMAGENET_ARCHS``,
  detectron2's MSRA ones) as a detector's backbone.
"""

from .detectron2 import (
    DETECTRON2_ARCHS,
    MSRA_IMAGENET_ARCHS,
    convert_detectron2_state_dict,
    msra_backbone_weights,
    read_detectron2_pkl,
)
from .imagenet import (
    IMAGENET_BACKBONES,
    TORCHVISION_IMAGENET_ARCHS,
    PlacedWeights,
    build_imagenet_backbone,
    convention_mismatches,
    convert_torchvision_backbone,
    place_backbone_weights,
    torchvision_backbone_weights,
)
from .torchvision import TORCHVISION_ARCHS, ConversionError, convert_torchvision_state_dict

__all__ = [
    "ConversionError",
    "DETECTRON2_ARCHS",
    "IMAGENET_BACKBONES",
    "MSRA_IMAGENET_ARCHS",
    "PlacedWeights",
    "TORCHVISION_ARCHS",
    "TORCHVISION_IMAGENET_ARCHS",
    "build_imagenet_backbone",
    "convention_mismatches",
    "convert_detectron2_state_dict",
    "convert_torchvision_backbone",
    "convert_torchvision_state_dict",
    "msra_backbone_weights",
    "place_backbone_weights",
    "read_detectron2_pkl",
    "torchvision_backbone_weights",
]
