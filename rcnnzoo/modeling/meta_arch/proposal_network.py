"""ProposalNetwork: a backbone and a proposal generator, for making and evaluating proposals."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from rcnnzoo.config import build_part
from rcnnzoo.modeling.backbone import Backbone
from rcnnzoo.structures import Boxes, ImageList, Instances

from .build import META_ARCH_REGISTRY
from .rcnn import normalize_images, register_normalization, run_proposal_generator

__all__ = ["ProposalNetwork", "rescale_proposals"]


def rescale_proposals(proposals: Instances, height: int, width: int) -> Instances:
    """Proposals of an image of ``proposals.image_size`` mapped to an image of ``(height, width)``.

    ``proposal_boxes`` are scaled, clipped, and those left empty dropped; other fields follow.
    """
    in_h, in_w = proposals.image_size
    boxes = Boxes(proposals.proposal_boxes.tensor.clone())
    boxes.scale(width / in_w, height / in_h)
    boxes.clip((height, width))
    out = Instances((height, width), **proposals.get_fields())
    out.proposal_boxes = boxes
    return out[boxes.nonempty()]


@META_ARCH_REGISTRY.register()
class ProposalNetwork(nn.Module):
    """Backbone + proposal generator: proposals as the model's output, e.g. to score their recall.

    Calling convention as :class:`GeneralizedRCNN`: ``model(batched_inputs)``. Eval mode returns
    ``[{"proposals": Instances(proposal_boxes, objectness_logits)}]``, boxes rescaled to each
    input's ``height`` x ``width`` (the original image), best first. Training mode returns the
    proposal generator's losses (an RPN trained alone; needs ``"instances"``).

    Args:
        backbone: the feature extractor, or None for a generator that reads only the images
            (``needs_features = False``, e.g. :class:`SelectiveSearch`): the model then has no
            parameters at all.
        proposal_generator: a built module or a lazy config, built here with ``input_shape``
            (the backbone's output shapes, ``{}`` without a backbone) and ``input_format``.
        pixel_mean, pixel_std: per-channel normalization in ``input_format`` order, needed with a
            backbone; without one the images are passed as they are.
        pixel_divisor: images are divided by it before the normalization (see
            :class:`GeneralizedRCNN`); 1 by default.
        input_format: "BGR" or "RGB", the channel order the model expects.
    """

    _deferred_args_ = ("proposal_generator",)

    def __init__(
        self,
        *,
        backbone: Backbone | None,
        proposal_generator: Any,
        pixel_mean: tuple[float, float, float] | None = None,
        pixel_std: tuple[float, float, float] | None = None,
        input_format: str = "BGR",
        pixel_divisor: float = 1.0,
    ):
        super().__init__()
        if input_format not in ("BGR", "RGB"):
            raise ValueError(f"input_format must be 'BGR' or 'RGB', got {input_format!r}")
        if backbone is not None and (pixel_mean is None or pixel_std is None):
            raise ValueError("ProposalNetwork with a backbone needs pixel_mean and pixel_std")
        self.backbone = backbone
        shape = backbone.output_shape() if backbone is not None else {}
        self.proposal_generator = build_part(proposal_generator, input_shape=shape, input_format=input_format)
        if backbone is None and getattr(self.proposal_generator, "needs_features", True):
            raise ValueError(
                f"ProposalNetwork without a backbone needs a proposal generator that reads no features "
                f"(needs_features = False, e.g. SelectiveSearch); {type(self.proposal_generator).__name__} "
                "reads them"
            )
        self.input_format = input_format
        # Also where the model's device is read from: it may have no parameters.
        mean = pixel_mean if pixel_mean is not None else (0.0, 0.0, 0.0)
        std = pixel_std if pixel_std is not None else (1.0, 1.0, 1.0)
        register_normalization(self, mean, std, pixel_divisor)

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    def preprocess_image(self, batched_inputs: list[dict]) -> ImageList:
        """The images as an ImageList: normalized and padded for the backbone, or as they are without one."""
        if self.backbone is None:
            return ImageList.from_tensors([x["image"].to(self.device, non_blocking=True) for x in batched_inputs])
        return ImageList.from_tensors(normalize_images(self, batched_inputs), self.backbone.size_divisibility)

    def forward(self, batched_inputs: list[dict]) -> dict[str, torch.Tensor] | list[dict]:
        """
        Returns:
            in training, the proposal generator's losses; in eval mode, per input,
            ``{"proposals": Instances}`` in the input's ``height`` x ``width`` frame.
        """
        if self.training and any("instances" not in x for x in batched_inputs):
            raise ValueError("In training mode every input needs 'instances' (the ground truth)")
        images = self.preprocess_image(batched_inputs)
        features = self.backbone(images.tensor) if self.backbone is not None else {}
        gt_instances = [x["instances"].to(self.device) for x in batched_inputs] if self.training else None
        proposals, losses = run_proposal_generator(
            self.proposal_generator, batched_inputs, images, features, gt_instances
        )
        if self.training:
            return losses
        out = []
        for props, inputs, size in zip(proposals, batched_inputs, images.image_sizes):
            height, width = inputs.get("height", size[0]), inputs.get("width", size[1])
            out.append({"proposals": rescale_proposals(props, height, width)})
        return out
