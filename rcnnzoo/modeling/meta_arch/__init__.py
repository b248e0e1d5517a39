"""Meta-architectures that assemble backbone, proposal generator and heads."""

from .build import META_ARCH_REGISTRY
from .crop_warp import context_padded_boxes, crop_and_warp
from .postprocessing import detector_postprocess
from .proposal_network import ProposalNetwork, rescale_proposals
from .rcnn import GeneralizedRCNN, run_proposal_generator
from .rcnn_warped import RCNN

__all__ = [
    "META_ARCH_REGISTRY",
    "GeneralizedRCNN",
    "ProposalNetwork",
    "RCNN",
    "context_padded_boxes",
    "crop_and_warp",
    "detector_postprocess",
    "rescale_proposals",
    "run_proposal_generator",
]
