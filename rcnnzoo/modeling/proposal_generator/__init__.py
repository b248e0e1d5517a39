"""Proposal generators: RPN, selective search, and proposals precomputed in a file."""

from .build import PROPOSAL_GENERATOR_REGISTRY
from .precomputed import PrecomputedProposals
from .proposal_utils import add_ground_truth_to_proposals, find_top_rpn_proposals
from .rpn import RPN, RPN_HEAD_REGISTRY, StandardRPNHead
from .selective_search import SELECTIVE_SEARCH_MODES, SelectiveSearch, selective_search_boxes

__all__ = [
    "PROPOSAL_GENERATOR_REGISTRY",
    "RPN",
    "RPN_HEAD_REGISTRY",
    "SELECTIVE_SEARCH_MODES",
    "PrecomputedProposals",
    "SelectiveSearch",
    "StandardRPNHead",
    "add_ground_truth_to_proposals",
    "find_top_rpn_proposals",
    "selective_search_boxes",
]
