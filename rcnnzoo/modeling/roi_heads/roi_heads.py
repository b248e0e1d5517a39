"""RoI heads: sample RoIs, pool their features, predict classes and boxes."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torchvision.ops import box_iou

from rcnnzoo.config import build_part
from rcnnzoo.layers import ShapeSpec
from rcnnzoo.modeling.matcher import Matcher
from rcnnzoo.modeling.proposal_generator.proposal_utils import add_ground_truth_to_proposals
from rcnnzoo.modeling.sampling import subsample_labels
from rcnnzoo.structures import Boxes, ImageList, Instances
from rcnnzoo.utils.registry import Registry

__all__ = ["ROI_HEADS_REGISTRY", "StandardROIHeads", "sample_rois"]

ROI_HEADS_REGISTRY = Registry("ROI_HEADS")
ROI_HEADS_REGISTRY.__doc__ = """RoI heads: called as ``(images, features, proposals, targets)`` and
returning ``(list[Instances], dict of losses)``."""


@torch.no_grad()
def sample_rois(
    proposals: Instances,
    targets: Instances,
    matcher: Matcher,
    num_classes: int,
    batch_size_per_image: int,
    positive_fraction: float,
) -> Instances:
    """Label one image's proposals and sample a minibatch of them (Fast R-CNN §2.3).

    A proposal whose best IoU with the ground truth passes the matcher is foreground with
    that box's class; otherwise background (label ``num_classes``). At most
    ``positive_fraction`` of the ``batch_size_per_image`` samples are foreground.

    Returns:
        the sampled proposals with ``gt_classes`` (Tensor[S] int64) and ``gt_boxes``
        (Boxes[S]; for background RoIs, the proposal box itself so deltas stay finite).
    """
    gt_boxes = targets.gt_boxes.tensor
    matches, match_labels = matcher(box_iou(gt_boxes, proposals.proposal_boxes.tensor))
    if len(gt_boxes):
        classes = targets.gt_classes[matches].clone()
        matched_boxes = gt_boxes[matches]
    else:
        classes = torch.zeros_like(matches)
        matched_boxes = proposals.proposal_boxes.tensor.clone()
    classes[match_labels == 0] = num_classes
    classes[match_labels == -1] = -1
    pos, neg = subsample_labels(classes, batch_size_per_image, positive_fraction, num_classes)
    keep = torch.cat([pos, neg])
    sampled = proposals[keep]
    sampled.gt_classes = classes[keep]
    boxes = matched_boxes[keep]
    bg = sampled.gt_classes == num_classes
    boxes[bg] = sampled.proposal_boxes.tensor[bg]
    sampled.gt_boxes = Boxes(boxes)
    return sampled


@ROI_HEADS_REGISTRY.register()
class StandardROIHeads(nn.Module):
    """The box branch of Fast / Faster R-CNN: pooler -> box head -> predictor.

    ``box_pooler``, ``box_head`` and ``box_predictor`` may be lazy configs; they are built
    here with ``scales``, ``input_shape`` and ``num_classes`` inferred from the backbone, so
    ``num_classes`` is set in one place (this class).

    Args:
        input_shape: the backbone's ``output_shape()``.
        in_features: which backbone outputs the pooler reads.
        num_classes: foreground classes K.
        batch_size_per_image, positive_fraction: RoIs sampled per image in training (512, 0.25).
        proposal_matcher: default IoU >= 0.5 foreground, otherwise background.
        proposal_append_gt: add ground-truth boxes to the proposals in training.
    """

    _deferred_args_ = ("box_pooler", "box_head", "box_predictor")

    def __init__(
        self,
        *,
        input_shape: dict[str, ShapeSpec],
        in_features: list[str],
        num_classes: int,
        box_pooler: Any,
        box_head: Any,
        box_predictor: Any,
        batch_size_per_image: int = 512,
        positive_fraction: float = 0.25,
        proposal_matcher: Matcher | None = None,
        proposal_append_gt: bool = True,
    ):
        super().__init__()
        missing = [f for f in in_features if f not in input_shape]
        if missing:
            raise KeyError(f"RoI heads in_features {missing} not among backbone outputs {list(input_shape)}")
        self.in_features = list(in_features)
        channels = {input_shape[f].channels for f in self.in_features}
        if len(channels) != 1:
            raise ValueError(f"RoI heads need the same channels on every level, got {channels}")
        scales = [1.0 / input_shape[f].stride for f in self.in_features]
        self.box_pooler = build_part(box_pooler, scales=scales)
        pooled = self.box_pooler.output_shape(channels.pop())
        self.box_head = build_part(box_head, input_shape=pooled)
        self.box_predictor = build_part(box_predictor, input_shape=self.box_head.output_shape, num_classes=num_classes)
        self.num_classes = num_classes
        self.batch_size_per_image = batch_size_per_image
        self.positive_fraction = positive_fraction
        self.proposal_matcher = proposal_matcher or Matcher([0.5], [0, 1], allow_low_quality_matches=False)
        self.proposal_append_gt = proposal_append_gt

    def label_and_sample_proposals(self, proposals: list[Instances], targets: list[Instances]) -> list[Instances]:
        """Per image, the sampled RoIs with ``gt_classes`` and ``gt_boxes`` (see :func:`sample_rois`)."""
        if self.proposal_append_gt:
            proposals = add_ground_truth_to_proposals(targets, proposals)
        return [
            sample_rois(p, t, self.proposal_matcher, self.num_classes, self.batch_size_per_image, self.positive_fraction)
            for p, t in zip(proposals, targets)
        ]

    def forward(
        self,
        images: ImageList,
        features: dict[str, torch.Tensor],
        proposals: list[Instances],
        targets: list[Instances] | None = None,
    ) -> tuple[list[Instances], dict[str, torch.Tensor]]:
        """
        Args:
            features: backbone outputs, name -> Tensor[N, C, Hi, Wi].
            proposals: per image, Instances with ``proposal_boxes``.
            targets: per image, ground truth (``gt_boxes``, ``gt_classes``); required in training.
        Returns:
            in training ``([], losses)``; in inference ``(detections per image, {})``.
        """
        if self.training:
            if targets is None:
                raise ValueError("RoI heads need targets in training mode")
            return [], self.loss(features, self.label_and_sample_proposals(proposals, targets))
        return self.predict(features, proposals), {}

    def _box_predictions(self, features: dict[str, torch.Tensor], proposals: list[Instances]):
        pooled = self.box_pooler([features[f] for f in self.in_features], [p.proposal_boxes for p in proposals])
        return self.box_predictor(self.box_head(pooled))

    def loss(self, features: dict[str, torch.Tensor], sampled: list[Instances]) -> dict[str, torch.Tensor]:
        """Box losses on already-sampled RoIs."""
        return self.box_predictor.losses(self._box_predictions(features, sampled), sampled)

    def predict(self, features: dict[str, torch.Tensor], proposals: list[Instances]) -> list[Instances]:
        """Detections per image, in the resized input frame."""
        return self.box_predictor.inference(self._box_predictions(features, proposals), proposals)
