"""The proposal generator registry."""

from rcnnzoo.utils.registry import Registry

__all__ = ["PROPOSAL_GENERATOR_REGISTRY"]

PROPOSAL_GENERATOR_REGISTRY = Registry("PROPOSAL_GENERATOR")
PROPOSAL_GENERATOR_REGISTRY.__doc__ = """Proposal generators: RPN, selective search, precomputed proposals.

Each is an ``nn.Module`` called as ``(images: ImageList, features: dict, gt_instances)`` and
returning ``(list[Instances(proposal_boxes, objectness_logits)], dict of losses)``, the boxes in
the frame of each (resized) image, ``images.image_sizes[i]``.

Optional class attributes a meta-architecture reads:

* ``uses_batched_inputs = True``: also called with ``batched_inputs=`` (the model's input dicts),
  for generators that need the images themselves (selective search) or data the inputs carry
  (precomputed proposals);
* ``needs_features = False``: the backbone's features are not used, so a proposal-only model
  may have no backbone.

A generator may be built with ``input_shape`` (the backbone's output shapes) and
``input_format`` (the model's channel order) when its constructor takes them.
"""
