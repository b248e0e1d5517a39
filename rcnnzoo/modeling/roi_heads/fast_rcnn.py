"""Fast R-CNN predictor: class scores and class-specific box deltas, with loss and inference.

Class labels: foreground classes are ``0 .. K-1``; the background is label ``K``
(``num_classes``). This is the one place that convention is defined; the classifier
therefore has K + 1 outputs, the last one for background.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from rcnnzoo.layers import ShapeSpec, batched_nms_topk
from rcnnzoo.modeling.box_regression import Box2BoxTransform, smooth_l1_or_l1
from rcnnzoo.structures import Boxes, Instances
from rcnnzoo.utils.registry import Registry

__all__ = [
    "ROI_BOX_PREDICTOR_REGISTRY",
    "FastRCNNOutputLayers",
    "fast_rcnn_box_loss",
    "fast_rcnn_inference",
    "fast_rcnn_losses",
]

ROI_BOX_PREDICTOR_REGISTRY = Registry("ROI_BOX_PREDICTOR")
ROI_BOX_PREDICTOR_REGISTRY.__doc__ = """Box predictors (softmax classifier, per-class SVMs), built
with ``input_shape`` (the box head's output) and ``num_classes`` filled in by the RoI heads."""


def fast_rcnn_losses(
    scores: torch.Tensor,
    deltas: torch.Tensor,
    gt_classes: torch.Tensor,
    proposal_boxes: torch.Tensor,
    gt_boxes: torch.Tensor,
    box2box_transform: Box2BoxTransform,
    smooth_l1_beta: float = 0.0,
) -> dict[str, torch.Tensor]:
    """The multi-task loss of Fast R-CNN (Girshick 2015, Eqn. 1).

    Args:
        scores (Tensor[R, K+1]): classification logits, background last.
        deltas (Tensor[R, 4*K] or Tensor[R, 4]): class-specific (or agnostic) box deltas.
        gt_classes (Tensor[R] int64): in [0, K], K = background.
        proposal_boxes, gt_boxes (Tensor[R, 4]): the RoIs and their matched ground truth.
    Returns:
        {"loss_cls": cross entropy averaged over the R RoIs,
         "loss_box_reg": see :func:`fast_rcnn_box_loss`}.
    """
    num_classes = scores.shape[1] - 1
    loss_cls = F.cross_entropy(scores, gt_classes, reduction="mean") if len(gt_classes) else scores.sum() * 0
    loss_box = fast_rcnn_box_loss(
        deltas, gt_classes, proposal_boxes, gt_boxes, box2box_transform, num_classes, smooth_l1_beta
    )
    return {"loss_cls": loss_cls, "loss_box_reg": loss_box}


def fast_rcnn_box_loss(
    deltas: torch.Tensor,
    gt_classes: torch.Tensor,
    proposal_boxes: torch.Tensor,
    gt_boxes: torch.Tensor,
    box2box_transform: Box2BoxTransform,
    num_classes: int,
    smooth_l1_beta: float = 0.0,
) -> torch.Tensor:
    """The box term of Fast R-CNN's loss: the ground-truth class's deltas on the foreground RoIs.

    Args:
        deltas (Tensor[R, 4*K] or Tensor[R, 4]): class-specific (or agnostic) box deltas.
        gt_classes (Tensor[R] int64): in [0, K], K = background (``num_classes``).
        proposal_boxes, gt_boxes (Tensor[R, 4]): the RoIs and their matched ground truth.
    Returns:
        scalar Tensor: smooth L1 (or L1) summed over the foreground RoIs, divided by R.
    """
    fg = ((gt_classes >= 0) & (gt_classes < num_classes)).nonzero().squeeze(1)
    if deltas.shape[1] == 4:  # class-agnostic regression
        fg_deltas = deltas[fg]
    else:
        fg_deltas = deltas.view(len(deltas), deltas.shape[1] // 4, 4)[fg, gt_classes[fg]]  # also for 0 RoIs
    target = box2box_transform.get_deltas(proposal_boxes[fg], gt_boxes[fg])
    # dividing by all RoIs (not only foreground) weighs each RoI equally, as the paper's lambda=1 with [u >= 1]
    return smooth_l1_or_l1(fg_deltas, target, smooth_l1_beta) / max(len(gt_classes), 1)


def fast_rcnn_inference(
    boxes: list[torch.Tensor],
    scores: list[torch.Tensor],
    image_sizes: list[tuple[int, int]],
    score_thresh: float,
    nms_thresh: float,
    topk_per_image: int,
    min_box_size: float = 0.0,
) -> list[Instances]:
    """Per-class score threshold, class-aware NMS, then top-k, for each image.

    Args:
        boxes: per image, Tensor[Ri, K*4] (or Tensor[Ri, 4]) decoded boxes.
        scores: per image, Tensor[Ri, K+1] probabilities, background last.
        min_box_size: if > 0, candidates whose clipped box is narrower or lower than it are
            dropped before NMS (torchvision drops those under 1e-2 px); 0 keeps them all.
    Returns:
        per image, Instances(pred_boxes, scores, pred_classes) in that image's resized frame.
    """
    return [
        _inference_single_image(b, s, size, score_thresh, nms_thresh, topk_per_image, min_box_size)
        for b, s, size in zip(boxes, scores, image_sizes)
    ]


def _inference_single_image(
    boxes: torch.Tensor, scores: torch.Tensor, image_size: tuple[int, int], score_thresh: float,
    nms_thresh: float, topk: int, min_box_size: float = 0.0,
) -> Instances:
    scores = scores[:, :-1]  # drop background
    num_rois, num_classes = scores.shape
    boxes = boxes.reshape(num_rois, boxes.shape[1] // 4, 4)  # also for zero RoIs
    h, w = image_size
    boxes = torch.stack(
        (boxes[..., 0].clamp(0, w), boxes[..., 1].clamp(0, h), boxes[..., 2].clamp(0, w), boxes[..., 3].clamp(0, h)),
        dim=-1,
    ).expand(num_rois, num_classes, 4)

    valid = torch.isfinite(boxes).all(dim=-1) & torch.isfinite(scores) & (scores > score_thresh)
    if min_box_size > 0:
        valid &= (boxes[..., 2:] - boxes[..., :2] >= min_box_size).all(dim=-1)
    roi_idx, cls_idx = valid.nonzero(as_tuple=True)
    cand_boxes = boxes[roi_idx, cls_idx]
    cand_scores = scores[roi_idx, cls_idx]
    # batched_nms(...)[:topk], without running NMS on candidates that cannot make the top k
    keep = batched_nms_topk(cand_boxes, cand_scores, cls_idx, nms_thresh, topk)
    return Instances(
        image_size, pred_boxes=Boxes(cand_boxes[keep]), scores=cand_scores[keep], pred_classes=cls_idx[keep]
    )


@ROI_BOX_PREDICTOR_REGISTRY.register()
class FastRCNNOutputLayers(nn.Module):
    """Linear classifier (K+1 way softmax) and class-specific linear box regressor.

    ``class_dependent_layers`` names the children whose shapes follow ``num_classes``: a fine-tune
    from a checkpoint with another class count re-initialises exactly these.

    Args:
        input_shape: the box head's output shape (its channels are the feature size).
        num_classes: foreground classes K (inferred from the RoI heads).
        box2box_transform: delta encoding, default weights (10, 10, 5, 5).
        cls_agnostic_bbox_reg: one box per RoI instead of one per class.
        smooth_l1_beta: 0 gives L1 (detectron2); 1.0 the paper's smooth L1.
        test_score_thresh, test_nms_thresh, test_topk_per_image: inference settings.
        test_min_box_size: at inference, drop candidate boxes (clipped) narrower or lower than
            this before NMS; 0 (the default) keeps them all, torchvision uses 1e-2.
        loss_weight: multipliers for "loss_cls" and "loss_box_reg".
    """

    class_dependent_layers = ("cls_score", "bbox_pred")

    def __init__(
        self,
        *,
        input_shape: ShapeSpec,
        num_classes: int,
        box2box_transform: Box2BoxTransform | None = None,
        cls_agnostic_bbox_reg: bool = False,
        smooth_l1_beta: float = 0.0,
        test_score_thresh: float = 0.05,
        test_nms_thresh: float = 0.5,
        test_topk_per_image: int = 100,
        test_min_box_size: float = 0.0,
        loss_weight: dict[str, float] | None = None,
    ):
        super().__init__()
        in_features = input_shape.channels * (input_shape.height or 1) * (input_shape.width or 1)
        self.num_classes = num_classes
        self.cls_score = nn.Linear(in_features, num_classes + 1)
        self.bbox_pred = nn.Linear(in_features, 4 * (1 if cls_agnostic_bbox_reg else num_classes))
        nn.init.normal_(self.cls_score.weight, std=0.01)
        nn.init.normal_(self.bbox_pred.weight, std=0.001)
        nn.init.constant_(self.cls_score.bias, 0)
        nn.init.constant_(self.bbox_pred.bias, 0)
        self.box2box_transform = box2box_transform or Box2BoxTransform((10.0, 10.0, 5.0, 5.0))
        self.smooth_l1_beta = smooth_l1_beta
        self.test_score_thresh = test_score_thresh
        self.test_nms_thresh = test_nms_thresh
        self.test_topk_per_image = test_topk_per_image
        self.test_min_box_size = test_min_box_size
        self.loss_weight = {"loss_cls": 1.0, "loss_box_reg": 1.0, **(loss_weight or {})}

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (Tensor[R, D]) -> (scores Tensor[R, K+1] logits, deltas Tensor[R, 4K])."""
        x = torch.flatten(x, 1)
        return self.cls_score(x), self.bbox_pred(x)

    def losses(self, predictions: tuple[torch.Tensor, torch.Tensor], proposals: list[Instances]) -> dict[str, torch.Tensor]:
        """Loss on sampled proposals carrying ``gt_classes`` and ``gt_boxes``."""
        scores, deltas = predictions
        gt_classes = torch.cat([p.gt_classes for p in proposals])
        proposal_boxes = torch.cat([p.proposal_boxes.tensor for p in proposals])
        gt_boxes = torch.cat([p.gt_boxes.tensor for p in proposals])
        losses = fast_rcnn_losses(
            scores, deltas, gt_classes, proposal_boxes, gt_boxes, self.box2box_transform, self.smooth_l1_beta
        )
        return {k: v * self.loss_weight[k] for k, v in losses.items()}

    def predict_boxes(self, predictions: tuple[torch.Tensor, torch.Tensor], proposals: list[Instances]) -> list[torch.Tensor]:
        """Per image, Tensor[Ri, 4K] decoded boxes."""
        _, deltas = predictions
        boxes = torch.cat([p.proposal_boxes.tensor for p in proposals])
        decoded = self.box2box_transform.apply_deltas(deltas, boxes)
        return list(decoded.split([len(p) for p in proposals]))

    def predict_probs(self, predictions: tuple[torch.Tensor, torch.Tensor], proposals: list[Instances]) -> list[torch.Tensor]:
        """Per image, Tensor[Ri, K+1] softmax probabilities."""
        scores, _ = predictions
        return list(F.softmax(scores, dim=-1).split([len(p) for p in proposals]))

    def inference(self, predictions: tuple[torch.Tensor, torch.Tensor], proposals: list[Instances]) -> list[Instances]:
        """Detections per image (see :func:`fast_rcnn_inference`)."""
        return fast_rcnn_inference(
            self.predict_boxes(predictions, proposals),
            self.predict_probs(predictions, proposals),
            [p.image_size for p in proposals],
            self.test_score_thresh,
            self.test_nms_thresh,
            self.test_topk_per_image,
            self.test_min_box_size,
        )
