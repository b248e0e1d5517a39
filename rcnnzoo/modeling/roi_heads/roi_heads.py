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

__all__ = ["ROI_HEADS_REGISTRY", "Res5ROIHeads", "StandardROIHeads", "sample_rois", "sample_training_rois", "select_foreground_proposals"]

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
    with_class_ious: bool = False,
) -> Instances:
    """Label one image's proposals and sample a minibatch of them (Fast R-CNN §2.3).

    A proposal whose best IoU with the ground truth passes the matcher is foreground with
    that box's class; otherwise background (label ``num_classes``). At most
    ``positive_fraction`` of the ``batch_size_per_image`` samples are foreground.

    Returns:
        the sampled proposals with ``gt_classes`` (Tensor[S] int64), ``gt_boxes`` (Boxes[S]; for
        background RoIs, the proposal box itself so deltas stay finite) and ``gt_indices``
        (Tensor[S] int64, the matched ground truth's index in ``targets``; meaningless for
        background), which the mask branch uses to find each RoI's ground-truth mask. With
        ``with_class_ious`` also ``gt_class_ious`` (Tensor[S, K]: each RoI's best IoU with a box
        of each class), which R-CNN's per-class SVM negatives need.
    """
    gt_boxes = targets.gt_boxes.tensor
    iou = box_iou(gt_boxes, proposals.proposal_boxes.tensor)
    matches, match_labels = matcher(iou)
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
    sampled.gt_indices = matches[keep]
    if with_class_ious:
        iou_kept = iou[:, keep]
        class_ious = iou_kept.new_zeros(len(keep), num_classes)
        for k in targets.gt_classes.unique().tolist():
            class_ious[:, k] = iou_kept[targets.gt_classes == k].amax(dim=0)
        sampled.gt_class_ious = class_ious
    return sampled


def sample_training_rois(heads: nn.Module, proposals: list[Instances], targets: list[Instances]) -> list[Instances]:
    """The training RoIs of every image, as the RoI heads and R-CNN's meta-architecture sample them:
    the ground truth appended to the proposals if ``heads.proposal_append_gt``, then
    :func:`sample_rois` with ``heads``' matcher, class count, batch size and positive fraction
    (class IoUs too when ``heads.box_predictor`` needs them, as the SVM head does)."""
    if heads.proposal_append_gt:
        proposals = add_ground_truth_to_proposals(targets, proposals)
    return [
        sample_rois(
            p,
            t,
            heads.proposal_matcher,
            heads.num_classes,
            heads.batch_size_per_image,
            heads.positive_fraction,
            with_class_ious=getattr(heads.box_predictor, "needs_gt_class_ious", False),
        )
        for p, t in zip(proposals, targets)
    ]


def select_foreground_proposals(proposals: list[Instances], num_classes: int) -> tuple[list[Instances], torch.Tensor]:
    """The foreground RoIs of each image (label in ``0 .. K-1``), and a bool Tensor[R] marking
    them among all the RoIs concatenated in image order."""
    is_fg = [(p.gt_classes >= 0) & (p.gt_classes < num_classes) for p in proposals]
    return [p[m] for p, m in zip(proposals, is_fg)], torch.cat(is_fg)


def _pooled_channels(input_shape: dict[str, ShapeSpec], in_features: list[str], what: str) -> int:
    missing = [f for f in in_features if f not in input_shape]
    if missing:
        raise KeyError(f"{what} {missing} not among backbone outputs {list(input_shape)}")
    channels = {input_shape[f].channels for f in in_features}
    if len(channels) != 1:
        raise ValueError(f"RoI heads need the same channels on every level, got {channels}")
    return channels.pop()


@ROI_HEADS_REGISTRY.register()
class StandardROIHeads(nn.Module):
    """The box branch of Fast / Faster R-CNN: pooler -> box head -> predictor; optionally
    Mask R-CNN's mask branch: mask pooler -> mask head.

    ``box_pooler``, ``box_head``, ``box_predictor``, ``mask_pooler`` and ``mask_head`` may be
    lazy configs; they are built here with ``scales``, ``input_shape`` and ``num_classes``
    inferred from the backbone, so ``num_classes`` is set in one place (this class).

    Args:
        input_shape: the backbone's ``output_shape()``.
        in_features: which backbone outputs the box pooler reads.
        num_classes: foreground classes K.
        batch_size_per_image, positive_fraction: RoIs sampled per image in training (512, 0.25).
        proposal_matcher: default IoU >= 0.5 foreground, otherwise background.
        proposal_append_gt: add ground-truth boxes to the proposals in training.
        mask_in_features: backbone outputs the mask pooler reads (default ``in_features``).
        mask_pooler, mask_head: the mask branch; ``None`` (default) for a detector without masks.
            In training it sees only the foreground sampled RoIs and needs ``gt_masks`` in the
            targets; in inference it runs on the final detections and adds ``pred_masks``
            (Tensor[R, 1, M, M] probabilities, pasted into the image by ``detector_postprocess``).
    """

    _deferred_args_ = ("box_pooler", "box_head", "box_predictor", "mask_pooler", "mask_head")

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
        mask_in_features: list[str] | None = None,
        mask_pooler: Any = None,
        mask_head: Any = None,
    ):
        super().__init__()
        self.in_features = list(in_features)
        channels = _pooled_channels(input_shape, self.in_features, "RoI heads in_features")
        scales = [1.0 / input_shape[f].stride for f in self.in_features]
        self.box_pooler = build_part(box_pooler, scales=scales)
        pooled = self.box_pooler.output_shape(channels)
        self.box_head = build_part(box_head, input_shape=pooled)
        self.box_predictor = build_part(box_predictor, input_shape=self.box_head.output_shape, num_classes=num_classes)
        self.num_classes = num_classes
        self.batch_size_per_image = batch_size_per_image
        self.positive_fraction = positive_fraction
        self.proposal_matcher = proposal_matcher or Matcher([0.5], [0, 1], allow_low_quality_matches=False)
        self.proposal_append_gt = proposal_append_gt
        self.mask_on = mask_head is not None
        if not self.mask_on:
            if mask_pooler is not None or mask_in_features is not None:
                raise ValueError("mask_pooler / mask_in_features are set but there is no mask_head")
            return
        if mask_pooler is None:
            raise ValueError("The mask branch needs a mask_pooler (e.g. RoIAlign 14x14)")
        self.mask_in_features = list(mask_in_features or self.in_features)
        channels = _pooled_channels(input_shape, self.mask_in_features, "RoI heads mask_in_features")
        self.mask_pooler = build_part(mask_pooler, scales=[1.0 / input_shape[f].stride for f in self.mask_in_features])
        pooled = self.mask_pooler.output_shape(channels)
        self.mask_head = build_part(mask_head, input_shape=pooled, num_classes=num_classes)

    def label_and_sample_proposals(self, proposals: list[Instances], targets: list[Instances]) -> list[Instances]:
        """Per image, the sampled RoIs with ``gt_classes``, ``gt_boxes`` and ``gt_indices`` (see :func:`sample_rois`)."""
        return sample_training_rois(self, proposals, targets)

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
            targets: per image, ground truth (``gt_boxes``, ``gt_classes``, and ``gt_masks`` with
                a mask branch); required in training.
        Returns:
            in training ``([], losses)``; in inference ``(detections per image, {})``.
        """
        if self.training:
            if targets is None:
                raise ValueError("RoI heads need targets in training mode")
            if self.mask_on and any(not t.has("gt_masks") for t in targets):
                raise ValueError("The mask branch needs 'gt_masks' in the targets (mapper use_instance_mask=True)")
            return [], self.loss(features, self.label_and_sample_proposals(proposals, targets), targets)
        return self.predict(features, proposals), {}

    def _box_predictions(self, features: dict[str, torch.Tensor], proposals: list[Instances]):
        pooled = self.box_pooler([features[f] for f in self.in_features], [p.proposal_boxes for p in proposals])
        return self.box_predictor(self.box_head(pooled))

    def loss(
        self, features: dict[str, torch.Tensor], sampled: list[Instances], targets: list[Instances] | None = None
    ) -> dict[str, torch.Tensor]:
        """Box losses (and ``loss_mask`` with a mask branch, which needs ``targets``) on already-sampled RoIs."""
        losses = self.box_predictor.losses(self._box_predictions(features, sampled), sampled)
        if self.mask_on:
            fg, _ = select_foreground_proposals(sampled, self.num_classes)
            logits = self.mask_head(self._mask_features(features, [p.proposal_boxes for p in fg]))
            losses.update(self.mask_head.losses(logits, fg, targets))
        return losses

    def predict(self, features: dict[str, torch.Tensor], proposals: list[Instances]) -> list[Instances]:
        """Detections per image, in the resized input frame (with ``pred_masks`` from a mask branch)."""
        detections = self.box_predictor.inference(self._box_predictions(features, proposals), proposals)
        if self.mask_on:
            logits = self.mask_head(self._mask_features(features, [d.pred_boxes for d in detections]))
            detections = self.mask_head.inference(logits, detections)
        return detections

    def _mask_features(self, features: dict[str, torch.Tensor], boxes: list[Boxes]) -> torch.Tensor:
        return self.mask_pooler([features[f] for f in self.mask_in_features], boxes)


@ROI_HEADS_REGISTRY.register()
class Res5ROIHeads(StandardROIHeads):
    """The C4 model's RoI heads: res5 runs once per RoI and feeds both branches (He et al. 2017, Fig. 4 left).

    RoIs are pooled (14x14) from res4; the box head must be a :class:`Res5BoxHead` (anything with
    a ``res5`` module). Its 7x7 output maps are averaged for the box predictor and, for the
    foreground RoIs, given to the mask head unpooled (deconv to 14x14 masks). At inference the
    final boxes are pooled and run through res5 again for their masks.

    Args: as :class:`StandardROIHeads`, without ``mask_in_features`` and ``mask_pooler``
    (the box pooler and res5 are shared).
    """

    _deferred_args_ = ("box_pooler", "box_head", "box_predictor", "mask_head")

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
        mask_head: Any = None,
    ):
        super().__init__(
            input_shape=input_shape,
            in_features=in_features,
            num_classes=num_classes,
            box_pooler=box_pooler,
            box_head=box_head,
            box_predictor=box_predictor,
            batch_size_per_image=batch_size_per_image,
            positive_fraction=positive_fraction,
            proposal_matcher=proposal_matcher,
            proposal_append_gt=proposal_append_gt,
        )
        if not isinstance(getattr(self.box_head, "res5", None), nn.Module):
            raise TypeError(f"Res5ROIHeads needs a box head with a 'res5' module (Res5BoxHead), got {type(self.box_head)}")
        self.mask_on = mask_head is not None
        if self.mask_on:
            h, w = self.box_pooler.output_size
            res5 = ShapeSpec(channels=self.box_head.output_shape.channels, height=(h + 1) // 2, width=(w + 1) // 2)
            self.mask_head = build_part(mask_head, input_shape=res5, num_classes=num_classes)

    def _res5(self, features: dict[str, torch.Tensor], boxes: list[Boxes]) -> torch.Tensor:
        """Tensor[R, C5, 7, 7]: res5 on the RoIs pooled from ``in_features``."""
        return self.box_head.res5(self.box_pooler([features[f] for f in self.in_features], boxes))

    def loss(
        self, features: dict[str, torch.Tensor], sampled: list[Instances], targets: list[Instances] | None = None
    ) -> dict[str, torch.Tensor]:
        maps = self._res5(features, [p.proposal_boxes for p in sampled])
        losses = self.box_predictor.losses(self.box_predictor(maps.mean(dim=(2, 3))), sampled)
        if self.mask_on:
            fg, is_fg = select_foreground_proposals(sampled, self.num_classes)
            losses.update(self.mask_head.losses(self.mask_head(maps[is_fg]), fg, targets))
        return losses

    def predict(self, features: dict[str, torch.Tensor], proposals: list[Instances]) -> list[Instances]:
        maps = self._res5(features, [p.proposal_boxes for p in proposals])
        detections = self.box_predictor.inference(self.box_predictor(maps.mean(dim=(2, 3))), proposals)
        if self.mask_on:
            logits = self.mask_head(self._res5(features, [d.pred_boxes for d in detections]))
            detections = self.mask_head.inference(logits, detections)
        return detections
