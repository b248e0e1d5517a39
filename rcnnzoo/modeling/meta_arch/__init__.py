"""Meta-architectures that assemble backbone, proposal generator and heads."""

from .build import META_ARCH_REGISTRY
from .postprocessing import detector_postprocess
from .proposal_network import ProposalNetwork, rescale_proposals
from .rcnn import GeneralizedRCNN, run_proposal_generator

__all__ = [
    "META_ARCH_REGISTRY",
    "GeneralizedRCNN",
    "ProposalNetwork",
    "detector_postprocess",
    "rescale_proposals",
    "run_proposal_generator",
]
