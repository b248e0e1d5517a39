"""Meta-architectures that assemble backbone, proposal generator and heads."""

from .build import META_ARCH_REGISTRY
from .postprocessing import detector_postprocess
from .rcnn import GeneralizedRCNN

__all__ = ["META_ARCH_REGISTRY", "GeneralizedRCNN", "detector_postprocess"]
