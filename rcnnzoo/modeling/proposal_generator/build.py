"""The proposal generator registry."""

from rcnnzoo.utils.registry import Registry

__all__ = ["PROPOSAL_GENERATOR_REGISTRY"]

PROPOSAL_GENERATOR_REGISTRY = Registry("PROPOSAL_GENERATOR")
PROPOSAL_GENERATOR_REGISTRY.__doc__ = """Proposal generators: RPN, selective search, precomputed proposals.

Each is an ``nn.Module`` called as ``(images: ImageList, features: dict, gt_instances)`` and
returning ``(list[Instances(proposal_boxes, objectness_logits)], dict of losses)``.
"""
