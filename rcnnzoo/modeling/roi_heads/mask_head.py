"""Mask heads (Mask R-CNN, He et al. 2017): a small FCN predicting an M x M mask per RoI and class."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from rcnnzoo.layers import ShapeSpec
from rcnnzoo.structures import Instances
from rcnnzoo.utils.registry import Registry

from .box_head import conv_stack

__all__ = [
    "ROI_MASK_HEAD_REGISTRY",
    "MaskRCNNConvUpsampleHead",
    "mask_rcnn_inference",
    "mask_rcnn_loss",
    "mask_rcnn_targets",
]

ROI_MASK_HEAD_REGISTRY = Registry("ROI_MASK_HEAD")
ROI_MASK_HEAD_REGISTRY.__doc__ = """Mask heads, built with ``input_shape`` (ShapeSpec of a pooled RoI
feature) and ``num_classes`` filled in by the RoI heads. Each maps Tensor[R, C, h, w] to mask logits
Tensor[R, K or 1, M, M] and has ``losses(logits, fg_proposals, targets)`` and ``inference(logits, instances)``."""


def mask_rcnn_targets(fg_proposals: list[Instances], targets: list[Instances], mask_size: int) -> torch.Tensor:
    """The ground-truth mask of each foreground RoI, cut out of the RoI and resampled to M x M.

    Args:
        fg_proposals: per image, foreground sampled RoIs with ``proposal_boxes`` and ``gt_indices``
            (index of the matched ground truth in that image's ``targets``).
        targets: per image, ground truth with ``gt_masks`` (BitMasks or PolygonMasks).
    Returns:
        float32 Tensor[R, M, M] of 0s and 1s, R the total number of RoIs, in image order.
    """
    per_image = [
        t.gt_masks.crop_and_resize(p.proposal_boxes.tensor, mask_size, indices=p.gt_indices)
        for p, t in zip(fg_proposals, targets)
        if len(p)
    ]
    if not per_image:
        device = fg_proposals[0].proposal_boxes.device if fg_proposals else None
        return torch.zeros((0, mask_size, mask_size), device=device)
    return torch.cat(per_image).to(fg_proposals[0].proposal_boxes.device)


def mask_rcnn_loss(
    pred_mask_logits: torch.Tensor, fg_proposals: list[Instances], targets: list[Instances]
) -> torch.Tensor:
    """Per-pixel binary cross-entropy on the ground-truth class's channel only (Mask R-CNN §3).

    Decoupling masks from classes: the other K - 1 channels get no gradient, so classes do not
    compete for a pixel; the classification branch picks the channel at test time.

    Args:
        pred_mask_logits (Tensor[R, K, M, M] or Tensor[R, 1, M, M]): per-class (or
            class-agnostic) logits for the R foreground RoIs of ``fg_proposals``, in order.
        fg_proposals: per image, foreground RoIs with ``proposal_boxes``, ``gt_classes`` and
            ``gt_indices``.
        targets: per image, ground truth with ``gt_masks``.
    Returns:
        scalar: the loss averaged over the R x M x M pixels (0, still attached to the graph,
        when there is no foreground RoI).
    """
    if len(pred_mask_logits) == 0:
        return pred_mask_logits.sum() * 0
    gt_masks = mask_rcnn_targets(fg_proposals, targets, pred_mask_logits.shape[-1])
    if pred_mask_logits.shape[1] == 1:
        logits = pred_mask_logits[:, 0]
    else:
        gt_classes = torch.cat([p.gt_classes for p in fg_proposals])
        logits = pred_mask_logits[torch.arange(len(gt_classes), device=gt_classes.device), gt_classes]
    return F.binary_cross_entropy_with_logits(logits.float(), gt_masks, reduction="mean")


def mask_rcnn_inference(pred_mask_logits: torch.Tensor, instances: list[Instances]) -> list[Instances]:
    """Set ``pred_masks`` (float Tensor[Ri, 1, M, M], probabilities of the predicted class) in place.

    Args:
        pred_mask_logits (Tensor[R, K or 1, M, M]): logits for the detections of ``instances``, in order.
        instances: per image, detections with ``pred_classes``.
    Returns:
        ``instances``.
    """
    if pred_mask_logits.shape[1] == 1:
        logits = pred_mask_logits
    else:
        classes = torch.cat([i.pred_classes for i in instances])
        logits = pred_mask_logits[torch.arange(len(classes), device=classes.device), classes][:, None]
    probs = logits.float().sigmoid()
    for inst, p in zip(instances, probs.split([len(i) for i in instances])):
        inst.pred_masks = p
    return instances


@ROI_MASK_HEAD_REGISTRY.register()
class MaskRCNNConvUpsampleHead(nn.Module):
    """3x3 convs, a 2x2 stride-2 transposed conv, then a 1x1 conv with one mask per class.

    The FPN head of Mask R-CNN with the defaults: four 256-d convs on 14x14 RoI features,
    deconv to 28x28. With ``conv_dims=()`` it is the C4 head (deconv on res5's 7x7 output).

    Args:
        input_shape: pooled feature shape (channels, height, width).
        num_classes: K foreground classes (inferred from the RoI heads).
        conv_dims: channels of each 3x3 conv.
        deconv_dim: channels of the transposed conv.
        conv_norm: normalization after each 3x3 conv ("" none, "GN", "BN", ...).
        cls_agnostic_mask: one mask per RoI instead of one per class.
        loss_weight: multiplier of "loss_mask".

    ``predictor`` is the class-dependent layer (see ``FastRCNNOutputLayers.class_dependent_layers``).
    """

    class_dependent_layers = ("predictor",)

    def __init__(
        self,
        *,
        input_shape: ShapeSpec,
        num_classes: int,
        conv_dims: tuple[int, ...] = (256, 256, 256, 256),
        deconv_dim: int = 256,
        conv_norm: str = "",
        cls_agnostic_mask: bool = False,
        loss_weight: float = 1.0,
    ):
        super().__init__()
        channels = input_shape.channels
        self.convs, channels = conv_stack(channels, conv_dims, conv_norm)
        self.deconv = nn.ConvTranspose2d(channels, deconv_dim, kernel_size=2, stride=2)
        self.predictor = nn.Conv2d(deconv_dim, 1 if cls_agnostic_mask else num_classes, kernel_size=1)
        self.num_classes = num_classes
        self.loss_weight = loss_weight
        self._mask_size = 2 * (input_shape.height or 0)
        for m in [*self.convs, self.deconv]:
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")  # "c2_msra_fill"
                if m.bias is not None:
                    nn.init.constant_(m.bias, 0)
        nn.init.normal_(self.predictor.weight, std=0.001)
        nn.init.constant_(self.predictor.bias, 0)

    @property
    def mask_size(self) -> int:
        """M, the side of the predicted masks (twice the pooled size)."""
        return self._mask_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (Tensor[R, C, h, w]) -> mask logits Tensor[R, K (or 1), 2h, 2w]."""
        x = self.convs(x)
        return self.predictor(F.relu(self.deconv(x)))

    def losses(
        self, pred_mask_logits: torch.Tensor, fg_proposals: list[Instances], targets: list[Instances]
    ) -> dict[str, torch.Tensor]:
        """``{"loss_mask": ...}``, see :func:`mask_rcnn_loss`."""
        return {"loss_mask": mask_rcnn_loss(pred_mask_logits, fg_proposals, targets) * self.loss_weight}

    def inference(self, pred_mask_logits: torch.Tensor, instances: list[Instances]) -> list[Instances]:
        """Add ``pred_masks`` to the detections, see :func:`mask_rcnn_inference`."""
        return mask_rcnn_inference(pred_mask_logits, instances)
