"""One-vs-rest linear SVMs as the box classifier (R-CNN, Girshick et al. 2014; SPPnet), with
Fast R-CNN's class-specific box regression and inference.

Background is label ``K`` (``num_classes``), as in :mod:`.fast_rcnn`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import box_iou

from rcnnzoo.layers import ShapeSpec
from rcnnzoo.modeling.box_regression import Box2BoxTransform
from rcnnzoo.structures import Instances

from .fast_rcnn import ROI_BOX_PREDICTOR_REGISTRY, FastRCNNOutputLayers, fast_rcnn_box_loss

__all__ = ["LinearSVMOutputLayers", "class_max_ious", "svm_targets", "svm_hinge_loss"]


def class_max_ious(
    boxes: torch.Tensor, gt_boxes: torch.Tensor, gt_classes: torch.Tensor, num_classes: int
) -> torch.Tensor:
    """Each box's best IoU with the ground truth of each class (0 where the class has none).

    Args:
        boxes (Tensor[R, 4]), gt_boxes (Tensor[G, 4]): XYXY.
        gt_classes (Tensor[G] int64): in [0, K).
    Returns:
        Tensor[R, K].
    """
    iou = box_iou(boxes, gt_boxes)  # (R, G)
    out = iou.new_zeros((len(boxes), num_classes))
    return out.scatter_reduce_(1, gt_classes[None, :].expand_as(iou), iou, "amax", include_self=True)


def svm_targets(
    gt_classes: torch.Tensor,
    matched_ious: torch.Tensor,
    num_classes: int,
    class_ious: torch.Tensor | None = None,
    positive_iou_thresh: float = 0.5,
    negative_iou_thresh: float = 0.3,
) -> torch.Tensor:
    """Per-class SVM labels of the RoIs: +1 positive, -1 negative, 0 ignored.

    R-CNN's rule (§2.3 and appendix B): for class k, a RoI is positive when it is labelled k and
    overlaps its ground truth by at least ``positive_iou_thresh`` (1.0: the ground-truth boxes
    only, as R-CNN and SPPnet; 0.5: every RoI the matcher made foreground), negative when its IoU
    with every ground-truth box of class k is below ``negative_iou_thresh`` (0.3), and ignored in
    between.

    Without ``class_ious`` the IoU with each class's ground truth is unknown: a RoI labelled c is
    then taken as a negative for every other class, and a background RoI as a negative for all
    (exact when the matcher already ignores RoIs whose best IoU is in [0.3, 0.5), and the objects
    of different classes do not overlap by 0.3).

    Args:
        gt_classes (Tensor[R] int64): in [0, K], K = background.
        matched_ious (Tensor[R]): IoU of each RoI with its matched ground truth (used for foreground).
        class_ious (Tensor[R, K], optional): see :func:`class_max_ious`.
    Returns:
        Tensor[R, K] float in {-1, 0, 1}.
    """
    classes = torch.arange(num_classes, device=gt_classes.device)
    labelled = gt_classes[:, None] == classes[None, :]
    positive = labelled & (matched_ious[:, None] >= positive_iou_thresh)
    if class_ious is None:
        negative = ~labelled
    else:
        negative = (class_ious < negative_iou_thresh) & ~positive
    return positive.float() - negative.float()


def svm_hinge_loss(margins: torch.Tensor, targets: torch.Tensor, squared: bool = False) -> torch.Tensor:
    """``max(0, 1 - y s)`` (or its square) per (RoI, class), 0 where ``targets`` is 0.

    Args:
        margins (Tensor[R, K]): SVM scores ``s``.
        targets (Tensor[R, K]): ``y`` in {-1, 0, 1}.
    Returns:
        Tensor[R, K].
    """
    loss = F.relu(1.0 - targets * margins) * targets.abs()
    return loss * loss if squared else loss


@ROI_BOX_PREDICTOR_REGISTRY.register()
class LinearSVMOutputLayers(FastRCNNOutputLayers):
    """K one-vs-rest linear SVMs on the box head's feature, plus Fast R-CNN's box regressor.

    A drop-in for :class:`FastRCNNOutputLayers` (``model.roi_heads.box_predictor =
    L(LinearSVMOutputLayers)(...)``): the same forward outputs, box loss and inference.

    * Scores: ``forward`` returns ``Tensor[R, K+1]``, the K SVM margins ``w_k . x + b_k`` and a
      background score fixed at 0 (not learned): the argmax is the background exactly when no SVM
      fires, which is how one-vs-rest SVMs decide.
    * Training: the plain (the papers') or squared hinge loss of each class's SVM on the sampled
      RoIs, labels from :func:`svm_targets`, summed over the K SVMs and averaged over the RoIs
      (``loss_cls``), plus ``loss_svm_l2 = weight_decay / 2 * ||W||^2`` on the SVM weights (not
      their biases; on top of any weight decay the optimizer applies). The RoIs' per-class IoUs
      are read from a ``gt_class_ious`` field (Tensor[R, K], :func:`class_max_ious`) when the
      proposals carry one (:class:`StandardROIHeads` attaches it for a predictor with
      ``needs_gt_class_ious``); otherwise :func:`svm_targets`' fallback applies.
      Unlike R-CNN the SVMs train by SGD together with the network, on the sampled RoIs; the
      papers' post-hoc training with hard negative mining on cached features is
      :func:`~rcnnzoo.modeling.roi_heads.svm_training.train_linear_svms`, whose result
      :meth:`load_svms` installs.
    * Inference: a margin is not a probability; ``predict_probs`` maps it with a sigmoid to
      (0, 1) (margin 0 -> 0.5), which ``test_score_thresh`` and the COCO/VOC evaluators then
      rank. The background column becomes sigmoid(0) = 0.5 and is dropped by the inference.

    Args:
        input_shape, num_classes, box2box_transform, cls_agnostic_bbox_reg, smooth_l1_beta,
            test_score_thresh, test_nms_thresh, test_topk_per_image: as :class:`FastRCNNOutputLayers`.
        loss_type: "hinge" (R-CNN, via liblinear's L1-loss SVM) or "squared_hinge".
        weight_decay: L2 strength on the SVM weights, the ``lambda`` of ``lambda / 2 ||w||^2 +
            mean hinge``; with liblinear's ``C`` (``||w||^2 / 2 + C * sum hinge``) over N samples,
            ``lambda = 1 / (C N)``.
        positive_iou_thresh, negative_iou_thresh: see :func:`svm_targets`.
        positive_weight: loss weight of positive examples (R-CNN's code uses 2).
        loss_weight: multipliers for "loss_cls" and "loss_box_reg".
    """

    class_dependent_layers = ("svm", "bbox_pred")
    # sample_rois adds each RoI's best IoU per class, for R-CNN's per-class negatives (IoU < 0.3)
    needs_gt_class_ious = True

    def __init__(
        self,
        *,
        input_shape: ShapeSpec,
        num_classes: int,
        loss_type: str = "hinge",
        weight_decay: float = 1e-3,
        positive_iou_thresh: float = 0.5,
        negative_iou_thresh: float = 0.3,
        positive_weight: float = 1.0,
        box2box_transform: Box2BoxTransform | None = None,
        cls_agnostic_bbox_reg: bool = False,
        smooth_l1_beta: float = 0.0,
        test_score_thresh: float = 0.05,
        test_nms_thresh: float = 0.5,
        test_topk_per_image: int = 100,
        loss_weight: dict[str, float] | None = None,
    ):
        if loss_type not in ("hinge", "squared_hinge"):
            raise ValueError(f"loss_type must be 'hinge' or 'squared_hinge', got {loss_type!r}")
        super().__init__(
            input_shape=input_shape,
            num_classes=num_classes,
            box2box_transform=box2box_transform,
            cls_agnostic_bbox_reg=cls_agnostic_bbox_reg,
            smooth_l1_beta=smooth_l1_beta,
            test_score_thresh=test_score_thresh,
            test_nms_thresh=test_nms_thresh,
            test_topk_per_image=test_topk_per_image,
            loss_weight=loss_weight,
        )
        # the K+1-way softmax classifier is replaced by K SVMs; bbox_pred and the settings stay
        del self.cls_score
        self.svm = nn.Linear(self.bbox_pred.in_features, num_classes)
        nn.init.normal_(self.svm.weight, std=0.01)
        nn.init.constant_(self.svm.bias, 0)
        self.loss_type = loss_type
        self.weight_decay = weight_decay
        self.positive_iou_thresh = positive_iou_thresh
        self.negative_iou_thresh = negative_iou_thresh
        self.positive_weight = positive_weight

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (Tensor[R, D]) -> (scores Tensor[R, K+1]: K margins then a background 0, deltas Tensor[R, 4K])."""
        x = torch.flatten(x, 1)
        margins = self.svm(x)
        return F.pad(margins, (0, 1)), self.bbox_pred(x)

    def losses(
        self, predictions: tuple[torch.Tensor, torch.Tensor], proposals: list[Instances]
    ) -> dict[str, torch.Tensor]:
        """Hinge loss of the SVMs, their L2 term, and the box loss, on sampled proposals carrying
        ``gt_classes`` and ``gt_boxes`` (and optionally ``gt_class_ious``)."""
        scores, deltas = predictions
        margins = scores[:, :-1]
        gt_classes = torch.cat([p.gt_classes for p in proposals])
        proposal_boxes = torch.cat([p.proposal_boxes.tensor for p in proposals])
        gt_boxes = torch.cat([p.gt_boxes.tensor for p in proposals])
        has_class_ious = len(proposals) > 0 and all(p.has("gt_class_ious") for p in proposals)
        class_ious = torch.cat([p.gt_class_ious for p in proposals]) if has_class_ious else None
        targets = svm_targets(
            gt_classes,
            _paired_iou(proposal_boxes, gt_boxes),
            self.num_classes,
            class_ious,
            self.positive_iou_thresh,
            self.negative_iou_thresh,
        )
        per_pair = svm_hinge_loss(margins, targets, squared=self.loss_type == "squared_hinge")
        per_pair = torch.where(targets > 0, per_pair * self.positive_weight, per_pair)
        loss_box = fast_rcnn_box_loss(
            deltas,
            gt_classes,
            proposal_boxes,
            gt_boxes,
            self.box2box_transform,
            self.num_classes,
            self.smooth_l1_beta,
        )
        return {
            "loss_cls": per_pair.sum() / max(len(gt_classes), 1) * self.loss_weight["loss_cls"],
            "loss_svm_l2": 0.5 * self.weight_decay * self.svm.weight.pow(2).sum(),
            "loss_box_reg": loss_box * self.loss_weight["loss_box_reg"],
        }

    def predict_probs(
        self, predictions: tuple[torch.Tensor, torch.Tensor], proposals: list[Instances]
    ) -> list[torch.Tensor]:
        """Per image, Tensor[Ri, K+1]: sigmoid of each class's margin (background column 0.5)."""
        scores, _ = predictions
        return list(torch.sigmoid(scores).split([len(p) for p in proposals]))

    @torch.no_grad()
    def load_svms(self, weights: torch.Tensor, biases: torch.Tensor) -> None:
        """Install SVMs trained elsewhere, e.g. by ``train_linear_svms``.

        Args:
            weights (Tensor[K, D]), biases (Tensor[K]).
        """
        if weights.shape != self.svm.weight.shape or biases.shape != self.svm.bias.shape:
            raise ValueError(
                f"SVMs of shape {tuple(weights.shape)} / {tuple(biases.shape)} do not fit this predictor's "
                f"{tuple(self.svm.weight.shape)} / {tuple(self.svm.bias.shape)} (K classes x D features)"
            )
        self.svm.weight.copy_(weights)
        self.svm.bias.copy_(biases)


def _paired_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU of each row of ``a`` (Tensor[R, 4]) with the same row of ``b``: Tensor[R]."""
    lt = torch.maximum(a[:, :2], b[:, :2])
    rb = torch.minimum(a[:, 2:], b[:, 2:])
    inter = (rb - lt).clamp(min=0).prod(dim=1)
    area_a = (a[:, 2:] - a[:, :2]).prod(dim=1)
    area_b = (b[:, 2:] - b[:, :2]).prod(dim=1)
    return inter / (area_a + area_b - inter).clamp(min=1e-12)
