"""Proposal generators: RPN (and, in later issues, selective search and precomputed files)."""

from .build import PROPOSAL_GENERATOR_REGISTRY
from .proposal_utils import add_ground_truth_to_proposals, find_top_rpn_proposals
from .rpn import RPN, RPN_HEAD_REGISTRY, StandardRPNHead

__all__ = [
    "PROPOSAL_GENERATOR_REGISTRY",
    "RPN",
    "RPN_HEAD_REGISTRY",
    "StandardRPNHead",
    "add_ground_truth_to_proposals",
    "find_top_rpn_proposals",
]
