"""Region Proposal Network (Ren et al. 2015): objectness and box deltas for every anchor."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import box_iou

from rcnnzoo.config import build_part
from rcnnzoo.layers import ShapeSpec
from rcnnzoo.modeling.anchor_generator import DefaultAnchorGenerator
from rcnnzoo.modeling.box_regression import Box2BoxTransform, smooth_l1_or_l1
from rcnnzoo.modeling.matcher import Matcher
from rcnnzoo.modeling.sampling import subsample_labels
from rcnnzoo.structures import ImageList, Instances
from rcnnzoo.utils.registry import Registry

from .build import PROPOSAL_GENERATOR_REGISTRY
from .proposal_utils import find_top_rpn_proposals

__all__ = ["RPN", "RPN_HEAD_REGISTRY", "StandardRPNHead"]

RPN_HEAD_REGISTRY = Registry("RPN_HEAD")


@RPN_HEAD_REGISTRY.register()
class StandardRPNHead(nn.Module):
    """A 3x3 conv shared by all levels, then 1x1 convs for objectness and box deltas.

    Args:
        in_channels: channels of every input level (inferred from the backbone).
        num_anchors: anchors per location (inferred from the anchor generator).
        conv_dims: channels of the shared convs; -1 means ``in_channels`` (the paper uses
            one 3x3 conv of 512 channels on VGG16, i.e. ``(-1,)``).
    """

    def __init__(self, *, in_channels: int, num_anchors: int, conv_dims: tuple[int, ...] = (-1,), box_dim: int = 4):
        super().__init__()
        layers: list[nn.Module] = []
        channels = in_channels
        for dim in conv_dims:
            out = in_channels if dim == -1 else dim
            layers += [nn.Conv2d(channels, out, 3, padding=1), nn.ReLU(inplace=True)]
            channels = out
        self.conv = nn.Sequential(*layers)
        self.objectness_logits = nn.Conv2d(channels, num_anchors, 1)
        self.anchor_deltas = nn.Conv2d(channels, num_anchors * box_dim, 1)
        for layer in self.modules():
            if isinstance(layer, nn.Conv2d):
                nn.init.normal_(layer.weight, std=0.01)
                nn.init.constant_(layer.bias, 0)

    def forward(self, features: list[torch.Tensor]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """
        Args:
            features: per level, Tensor[N, C, Hi, Wi].
        Returns:
            logits: per level, Tensor[N, A, Hi, Wi]; deltas: per level, Tensor[N, A*4, Hi, Wi].
        """
        logits, deltas = [], []
        for x in features:
            t = self.conv(x)
            logits.append(self.objectness_logits(t))
            deltas.append(self.anchor_deltas(t))
        return logits, deltas


@PROPOSAL_GENERATOR_REGISTRY.register()
class RPN(nn.Module):
    """Region Proposal Network: proposals for the RoI heads, and the RPN losses in training.

    Sub-parts that depend on the backbone's shapes (``head``, ``anchor_generator``) may be
    given as lazy configs: they are built here with ``in_channels``, ``num_anchors`` and
    ``strides`` filled in from ``input_shape``, so configs never restate them.

    Args:
        input_shape: the backbone's ``output_shape()``.
        in_features: which backbone outputs to use, e.g. ``["p2", ..., "p6"]`` or ``["conv5"]``.
        head, anchor_generator: built modules or lazy configs.
        anchor_matcher: labels anchors; default IoU >= 0.7 positive, < 0.3 negative, plus the
            best anchor of every ground-truth box.
        box2box_transform: delta encoding, default weights (1, 1, 1, 1).
        batch_size_per_image, positive_fraction: anchors sampled per image for the losses (256, 0.5).
        pre_nms_topk, post_nms_topk: (train, test) proposals kept per level before NMS, and per
            image after NMS.
        nms_thresh, min_box_size: proposal NMS IoU and smallest side kept (input pixels).
        score_thresh: proposals whose objectness probability is below it are dropped before
            NMS; 0 (the default) keeps them all, torchvision's MobileNetV3 models use 0.05.
        anchor_boundary_thresh: if >= 0, anchors crossing the image border by more than this
            are ignored in training (the paper's choice); -1 keeps them (detectron2, torchvision).
        smooth_l1_beta: 0 gives L1 (detectron2), 1/9 torchvision's smooth L1.
        loss_weight: multipliers for "loss_rpn_cls" and "loss_rpn_loc".
    """

    _deferred_args_ = ("head", "anchor_generator")

    def __init__(
        self,
        *,
        input_shape: dict[str, ShapeSpec],
        in_features: list[str],
        head: Any = None,
        anchor_generator: Any = None,
        anchor_matcher: Matcher | None = None,
        box2box_transform: Box2BoxTransform | None = None,
        batch_size_per_image: int = 256,
        positive_fraction: float = 0.5,
        pre_nms_topk: tuple[int, int] = (2000, 1000),
        post_nms_topk: tuple[int, int] = (1000, 1000),
        nms_thresh: float = 0.7,
        min_box_size: float = 0.0,
        score_thresh: float = 0.0,
        anchor_boundary_thresh: int = -1,
        smooth_l1_beta: float = 0.0,
        loss_weight: dict[str, float] | None = None,
    ):
        super().__init__()
        missing = [f for f in in_features if f not in input_shape]
        if missing:
            raise KeyError(f"RPN in_features {missing} not among backbone outputs {list(input_shape)}")
        self.in_features = list(in_features)
        shapes = [input_shape[f] for f in self.in_features]
        channels = {s.channels for s in shapes}
        if len(channels) != 1:
            raise ValueError(f"RPN needs the same channels on every level, got {channels}")
        strides = [s.stride for s in shapes]
        self.anchor_generator = build_part(
            anchor_generator if anchor_generator is not None else _default_anchor_config(len(strides)),
            strides=strides,
        )
        num_anchors = set(self.anchor_generator.num_anchors)
        if len(num_anchors) != 1:
            raise ValueError(f"Every level must have the same number of anchors, got {num_anchors}")
        self.head = build_part(
            head if head is not None else _default_head_config(),
            in_channels=channels.pop(),
            num_anchors=num_anchors.pop(),
        )
        self.anchor_matcher = anchor_matcher or Matcher([0.3, 0.7], [0, -1, 1], allow_low_quality_matches=True)
        self.box2box_transform = box2box_transform or Box2BoxTransform((1.0, 1.0, 1.0, 1.0))
        self.batch_size_per_image = batch_size_per_image
        self.positive_fraction = positive_fraction
        self.pre_nms_topk = {True: pre_nms_topk[0], False: pre_nms_topk[1]}
        self.post_nms_topk = {True: post_nms_topk[0], False: post_nms_topk[1]}
        self.nms_thresh = nms_thresh
        self.min_box_size = float(min_box_size)
        self.score_thresh = float(score_thresh)
        self.anchor_boundary_thresh = anchor_boundary_thresh
        self.smooth_l1_beta = smooth_l1_beta
        self.loss_weight = {"loss_rpn_cls": 1.0, "loss_rpn_loc": 1.0, **(loss_weight or {})}

    def forward(
        self,
        images: ImageList,
        features: dict[str, torch.Tensor],
        gt_instances: list[Instances] | None = None,
    ) -> tuple[list[Instances], dict[str, torch.Tensor]]:
        """
        Args:
            images: the padded input batch (for the image sizes).
            features: backbone outputs, name -> Tensor[N, C, Hi, Wi].
            gt_instances: per image, with ``gt_boxes``; required in training.
        Returns:
            proposals: per image, Instances with ``proposal_boxes`` (Boxes) and
                ``objectness_logits`` (Tensor[P]), sorted by score.
            losses: {"loss_rpn_cls", "loss_rpn_loc"} in training, else {}.
        """
        feats = [features[f] for f in self.in_features]
        anchors = self.anchor_generator(feats)
        logits, deltas = self.head(feats)
        n = feats[0].shape[0]
        # (N, A, H, W) -> (N, H*W*A), matching the anchors' location-major order
        logits = [x.permute(0, 2, 3, 1).reshape(n, -1) for x in logits]
        deltas = [x.view(n, -1, 4, x.shape[-2], x.shape[-1]).permute(0, 3, 4, 1, 2).reshape(n, -1, 4) for x in deltas]

        losses: dict[str, torch.Tensor] = {}
        if self.training:
            if gt_instances is None:
                raise ValueError("RPN needs gt_instances in training mode")
            gt_labels, gt_boxes = self.label_and_sample_anchors(anchors, images.image_sizes, gt_instances)
            losses = self.losses(anchors, logits, gt_labels, deltas, gt_boxes)
        proposals = self.predict_proposals(anchors, logits, deltas, images.image_sizes)
        return proposals, losses

    @torch.no_grad()
    def label_and_sample_anchors(
        self, anchors: list[torch.Tensor], image_sizes: list[tuple[int, int]], gt_instances: list[Instances]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Label each anchor 1 / 0 / -1 (positive, negative, not sampled) and find its target box.

        Returns:
            labels (Tensor[N, A_total]) and matched ground-truth boxes (Tensor[N, A_total, 4]).
        """
        all_anchors = torch.cat(anchors)
        labels, boxes = [], []
        for image_size, gt in zip(image_sizes, gt_instances):
            gt_boxes = gt.gt_boxes.tensor
            matches, match_labels = self.anchor_matcher(box_iou(gt_boxes, all_anchors))
            match_labels = match_labels.to(torch.int64)
            if self.anchor_boundary_thresh >= 0:
                inside = _inside_image(all_anchors, image_size, self.anchor_boundary_thresh)
                match_labels[~inside] = -1
            pos, neg = subsample_labels(match_labels, self.batch_size_per_image, self.positive_fraction, 0)
            sampled = torch.full_like(match_labels, -1)
            sampled[pos] = 1
            sampled[neg] = 0
            labels.append(sampled)
            boxes.append(gt_boxes[matches] if len(gt_boxes) else torch.zeros_like(all_anchors))
        return torch.stack(labels), torch.stack(boxes)

    def losses(
        self,
        anchors: list[torch.Tensor],
        pred_logits: list[torch.Tensor],
        gt_labels: torch.Tensor,
        pred_deltas: list[torch.Tensor],
        gt_boxes: torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        """Objectness BCE over the sampled anchors and box-delta loss over the positive ones.

        Both are normalized by the number of sampled anchors (``batch_size_per_image`` times
        the number of images), as detectron2; the paper's lambda=10 with N_reg ~ 2400 anchor
        locations amounts to a similar weighting.
        """
        num_images = gt_labels.shape[0]
        logits = torch.cat(pred_logits, dim=1)  # (N, A_total)
        deltas = torch.cat(pred_deltas, dim=1)  # (N, A_total, 4)
        all_anchors = torch.cat(anchors)
        pos = gt_labels == 1
        valid = gt_labels >= 0

        target = self.box2box_transform.get_deltas(all_anchors.repeat(num_images, 1), gt_boxes.reshape(-1, 4))
        target = target.view(num_images, -1, 4)
        loss_loc = smooth_l1_or_l1(deltas[pos], target[pos], self.smooth_l1_beta)
        loss_cls = F.binary_cross_entropy_with_logits(
            logits[valid], gt_labels[valid].to(logits.dtype), reduction="sum"
        )
        normalizer = self.batch_size_per_image * num_images
        return {
            "loss_rpn_cls": loss_cls / normalizer * self.loss_weight["loss_rpn_cls"],
            "loss_rpn_loc": loss_loc / normalizer * self.loss_weight["loss_rpn_loc"],
        }

    @torch.no_grad()
    def predict_proposals(
        self,
        anchors: list[torch.Tensor],
        pred_logits: list[torch.Tensor],
        pred_deltas: list[torch.Tensor],
        image_sizes: list[tuple[int, int]],
    ) -> list[Instances]:
        """Decode, then keep the top proposals per image (see :func:`find_top_rpn_proposals`)."""
        return find_top_rpn_proposals(
            anchors,
            [x.detach() for x in pred_logits],
            [x.detach() for x in pred_deltas],
            image_sizes,
            box2box_transform=self.box2box_transform,
            nms_thresh=self.nms_thresh,
            pre_nms_topk=self.pre_nms_topk[self.training],
            post_nms_topk=self.post_nms_topk[self.training],
            min_box_size=self.min_box_size,
            score_thresh=self.score_thresh,
        )


def _inside_image(anchors: torch.Tensor, image_size: tuple[int, int], slack: int) -> torch.Tensor:
    h, w = image_size
    return (
        (anchors[:, 0] >= -slack)
        & (anchors[:, 1] >= -slack)
        & (anchors[:, 2] < w + slack)
        & (anchors[:, 3] < h + slack)
    )


def _default_anchor_config(num_levels: int) -> dict:
    from rcnnzoo.config import LazyCall

    if num_levels == 1:  # the paper's single stride-16 map
        return LazyCall(DefaultAnchorGenerator)(sizes=[[128, 256, 512]], aspect_ratios=[[0.5, 1.0, 2.0]])
    sizes = [[32 * 2**i] for i in range(num_levels)]
    return LazyCall(DefaultAnchorGenerator)(sizes=sizes, aspect_ratios=[[0.5, 1.0, 2.0]])


def _default_head_config() -> dict:
    from rcnnzoo.config import LazyCall

    return LazyCall(StandardRPNHead)()
