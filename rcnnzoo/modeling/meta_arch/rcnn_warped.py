"""R-CNN (Girshick et al. 2014): the CNN runs on every proposal, cropped from the image and warped.

Unlike :class:`GeneralizedRCNN`, whose backbone runs once per image and whose RoI heads pool
regions of its feature map, R-CNN crops each proposal (with context) out of the *image*, warps it
to the CNN's square input and runs the whole CNN on it (:mod:`.crop_warp`). The rest is shared
with the later systems: proposal generators (selective search, precomputed), box heads, the
softmax or per-class SVM predictors, Fast R-CNN's box encoding and inference.

Training the whole system is the paper's sequence of stages (fine-tuning with a softmax, then
SVMs and box regressors fitted post hoc on cached features): see
:mod:`rcnnzoo.engine.rcnn_stages`.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from rcnnzoo.config import build_part
from rcnnzoo.layers import ShapeSpec
from rcnnzoo.modeling.backbone import Backbone
from rcnnzoo.modeling.matcher import Matcher
from rcnnzoo.modeling.poolers import convert_boxes_to_rois
from rcnnzoo.modeling.roi_heads.roi_heads import sample_training_rois
from rcnnzoo.structures import ImageList, Instances

from .build import META_ARCH_REGISTRY
from .crop_warp import crop_and_warp
from .postprocessing import detector_postprocess
from .rcnn import normalize_images, register_normalization, run_proposal_generator

__all__ = ["RCNN"]

_BOX_REGRESSION = ("predictor", "pool5")


@META_ARCH_REGISTRY.register()
class RCNN(nn.Module):
    """R-CNN: proposals -> crop with context and warp -> CNN per region -> scores and boxes.

    Calling convention as :class:`GeneralizedRCNN`: ``model(batched_inputs)``; training mode
    returns a dict of losses (needs ``"instances"``), eval mode a list of ``{"instances":
    Instances(pred_boxes, scores, pred_classes)}`` at each input's ``height`` x ``width``.

    Per region: the box, dilated for ``context_padding`` pixels of context, is warped to
    ``input_size`` x ``input_size`` (:func:`~.crop_warp.crop_and_warp`); ``backbone`` runs on the
    crop; its ``in_feature`` map, max-pooled to ``pooled_size`` x ``pooled_size`` (R-CNN's pool5),
    feeds ``box_head`` (fc6/fc7) and ``box_predictor`` (a (K+1)-way softmax, or K linear SVMs:
    :class:`~rcnnzoo.modeling.roi_heads.LinearSVMOutputLayers`), which also gives class-specific
    box deltas.

    Training (the paper's fine-tuning, §2.3): each image's proposals, with its ground-truth boxes
    added, are labelled foreground (the class of the ground-truth box they overlap by IoU >= 0.5)
    or background (all others), and ``batch_size_per_image`` of them are sampled, at most
    ``positive_fraction`` foreground, padded with background; the loss is the predictor's. With
    4 images of 32 windows and ``positive_fraction=0.25``, a batch is the paper's 128 windows,
    32 of them positive. Deviation: the paper samples its 32 positive and 96 background windows
    uniformly over the whole training set; here they come from the images of the batch, and an
    image with fewer positives than its share fills the rest with background (Fast R-CNN's rule).

    Inference: every proposal is scored, in chunks of ``crop_batch_size`` crops; the predictor's
    inference applies the score threshold, per-class NMS and top-k; boxes are rescaled to the
    original image size.

    Args:
        backbone: the CNN, run on the warped crops; any backbone (TinyNet, VGG16, ResNet).
        proposal_generator: a module or lazy config (built with ``input_format``) that reads the
            images, not the features (``needs_features = False``: :class:`SelectiveSearch`,
            :class:`PrecomputedProposals`).
        box_head: module or lazy config, built with ``input_shape`` (the pooled feature's shape).
        box_predictor: module or lazy config, built with ``input_shape`` (the box head's output)
            and ``num_classes``.
        num_classes: foreground classes K (background is label K, as in
            :mod:`rcnnzoo.modeling.roi_heads.fast_rcnn`).
        in_feature: the backbone output the head reads (e.g. "conv5" for VGG16, "c5" for TinyNet).
        pixel_mean, pixel_std: per-channel normalization in ``input_format`` order.
        input_format: "BGR" or "RGB".
        input_size: side of the warped crops (the paper: 227; 224 for VGG16).
        context_padding: pixels of context around each box in the warped crop (the paper: 16).
        pooled_size: the ``in_feature`` map is max-pooled to this size (pool5: 7 for VGG16 at 224);
            None: no pooling, then ``input_size`` must be a multiple of the feature's stride.
        crop_batch_size: crops per CNN batch at inference and when caching features.
        batch_size_per_image, positive_fraction: the training windows sampled per image.
        proposal_matcher: labels the proposals in training; default IoU >= 0.5 foreground, else
            background.
        proposal_append_gt: add the ground-truth boxes to the proposals in training.
        box_regression: where the box deltas come from: ``"predictor"`` (the predictor's
            ``bbox_pred`` on the box head's output, trained with the fine-tuning) or ``"pool5"``
            (the paper's, appendix C: class-specific linear regressors on the pooled feature,
            fitted post hoc by ridge regression and installed with :meth:`load_box_regressors`;
            they predict zero deltas until then, and SGD never trains them).

    Attributes:
        pooled_dim: the size of the flattened pool5 feature (the pool5 box regressors' input).
    """

    _deferred_args_ = ("proposal_generator", "box_head", "box_predictor")

    def __init__(
        self,
        *,
        backbone: Backbone,
        proposal_generator: Any,
        box_head: Any,
        box_predictor: Any,
        num_classes: int,
        in_feature: str,
        pixel_mean: tuple[float, float, float],
        pixel_std: tuple[float, float, float],
        input_format: str = "BGR",
        input_size: int = 224,
        context_padding: float = 16.0,
        pooled_size: int | None = None,
        crop_batch_size: int = 128,
        batch_size_per_image: int = 32,
        positive_fraction: float = 0.25,
        proposal_matcher: Matcher | None = None,
        proposal_append_gt: bool = True,
        box_regression: str = "predictor",
    ):
        super().__init__()
        if input_format not in ("BGR", "RGB"):
            raise ValueError(f"input_format must be 'BGR' or 'RGB', got {input_format!r}")
        if box_regression not in _BOX_REGRESSION:
            raise ValueError(f"box_regression must be one of {_BOX_REGRESSION}, got {box_regression!r}")
        if not 0 <= 2 * context_padding < input_size:
            raise ValueError(
                f"context_padding must be in [0, input_size / 2), got {context_padding} for {input_size}"
            )
        if crop_batch_size < 1:
            raise ValueError(f"crop_batch_size must be positive, got {crop_batch_size}")
        self.backbone = backbone
        self.proposal_generator = build_part(
            proposal_generator, input_shape=backbone.output_shape(), input_format=input_format
        )
        if getattr(self.proposal_generator, "needs_features", True):
            raise ValueError(
                "R-CNN runs its CNN on warped regions, never on the whole image, so its proposal generator "
                "must read the images (needs_features = False: SelectiveSearch, PrecomputedProposals); got "
                f"{type(self.proposal_generator).__name__}"
            )
        self.in_feature = in_feature
        self.input_size = int(input_size)
        self.context_padding = float(context_padding)
        self.pooled_size = pooled_size
        pooled = self._pooled_shape(backbone.output_shape())
        self.box_head = build_part(box_head, input_shape=pooled)
        self.box_predictor = build_part(
            box_predictor, input_shape=self.box_head.output_shape, num_classes=num_classes
        )
        self.num_classes = num_classes
        self.crop_batch_size = int(crop_batch_size)
        self.batch_size_per_image = batch_size_per_image
        self.positive_fraction = positive_fraction
        self.proposal_matcher = proposal_matcher or Matcher([0.5], [0, 1], allow_low_quality_matches=False)
        self.proposal_append_gt = proposal_append_gt
        self.box_regression = box_regression
        self.pooled_dim = pooled.channels * pooled.height * pooled.width
        self.pool5_bbox_pred: nn.Linear | None = None
        if box_regression == "pool5":
            self.pool5_bbox_pred = nn.Linear(self.pooled_dim, 4 * num_classes)
            nn.init.zeros_(self.pool5_bbox_pred.weight)
            nn.init.zeros_(self.pool5_bbox_pred.bias)
            self.pool5_bbox_pred.requires_grad_(False)  # fitted post hoc, by ridge regression
        self.input_format = input_format
        register_normalization(self, pixel_mean, pixel_std, 1.0)

    def _pooled_shape(self, shapes: dict[str, ShapeSpec]) -> ShapeSpec:
        if self.in_feature not in shapes:
            raise KeyError(
                f"in_feature {self.in_feature!r} is not among the backbone's outputs {list(shapes)}"
            )
        spec = shapes[self.in_feature]
        if self.pooled_size is not None:
            return ShapeSpec(channels=spec.channels, height=self.pooled_size, width=self.pooled_size)
        stride = spec.stride or 1
        if self.input_size % stride:
            raise ValueError(
                f"input_size {self.input_size} is not a multiple of {self.in_feature!r}'s stride {stride}: "
                "the box head's input size would depend on the backbone's rounding; set pooled_size"
            )
        side = self.input_size // stride
        return ShapeSpec(channels=spec.channels, height=side, width=side)

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    def preprocess_image(self, batched_inputs: list[dict]) -> ImageList:
        """Normalize and pad the images into an ImageList; the padding is 0, the mean pixel."""
        return ImageList.from_tensors(normalize_images(self, batched_inputs))

    def propose(
        self, batched_inputs: list[dict], images: ImageList, gt_instances: list[Instances] | None = None
    ) -> list[Instances]:
        """Per image, Instances(proposal_boxes, objectness_logits) in its (resized) frame."""
        proposals, _ = run_proposal_generator(
            self.proposal_generator, batched_inputs, images, {}, gt_instances
        )
        return proposals

    def region_features(self, images: torch.Tensor, rois: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The CNN on the warped regions, in one batch.

        Args:
            images (Tensor[N, 3, H, W]): the normalized, zero-padded batch (``ImageList.tensor``).
            rois (Tensor[R, 5]): ``(image index, x0, y0, x1, y1)``.
        Returns:
            pooled (Tensor[R, C * h * w]): the flattened pool5 feature; head (Tensor[R, D]): the
            box head's output (fc7).
        """
        crops = crop_and_warp(images, rois, self.input_size, self.context_padding)
        feature = self.backbone(crops)[self.in_feature]
        if self.pooled_size is not None:
            feature = F.adaptive_max_pool2d(feature, self.pooled_size)
        return feature.flatten(1), self.box_head(feature)

    def predict_regions(self, images: torch.Tensor, rois: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Class scores (Tensor[R, K+1]) and box deltas (Tensor[R, 4K]) of the regions, computed in
        chunks of ``crop_batch_size`` (one chunk for no region, so that the shapes come out right)."""
        scores, deltas = [], []
        for start in range(0, max(len(rois), 1), self.crop_batch_size):
            pooled, head = self.region_features(images, rois[start : start + self.crop_batch_size])
            chunk_scores, chunk_deltas = self.box_predictor(head)
            if self.pool5_bbox_pred is not None:
                chunk_deltas = self.pool5_bbox_pred(pooled)
            scores.append(chunk_scores)
            deltas.append(chunk_deltas)
        return torch.cat(scores), torch.cat(deltas)

    @torch.no_grad()
    def load_box_regressors(self, weights: torch.Tensor, biases: torch.Tensor) -> None:
        """Install the pool5 box regressors, e.g. from
        :func:`~rcnnzoo.modeling.roi_heads.ridge_box_regression.fit_class_box_regressors`.

        Args:
            weights (Tensor[4K, D]), biases (Tensor[4K]): deltas (in the predictor's
                ``box2box_transform`` encoding) of class k in rows ``4k .. 4k+3``; D the pool5 size.
        """
        if self.pool5_bbox_pred is None:
            raise ValueError("load_box_regressors needs box_regression='pool5'")
        layer = self.pool5_bbox_pred
        if weights.shape != layer.weight.shape or biases.shape != layer.bias.shape:
            raise ValueError(
                f"Box regressors of shape {tuple(weights.shape)} / {tuple(biases.shape)} do not fit "
                f"{tuple(layer.weight.shape)} / {tuple(layer.bias.shape)} (4K deltas x D pool5 features)"
            )
        layer.weight.copy_(weights)
        layer.bias.copy_(biases)

    def label_and_sample_proposals(
        self, proposals: list[Instances], targets: list[Instances]
    ) -> list[Instances]:
        """Per image, the sampled training windows with ``gt_classes`` and ``gt_boxes`` (see
        :func:`~rcnnzoo.modeling.roi_heads.sample_rois`)."""
        return sample_training_rois(self, proposals, targets)

    def forward(self, batched_inputs: list[dict]) -> dict[str, torch.Tensor] | list[dict]:
        if not self.training:
            return self.inference(batched_inputs)
        if any("instances" not in x for x in batched_inputs):
            raise ValueError("In training mode every input needs 'instances' (the ground truth)")
        images = self.preprocess_image(batched_inputs)
        gt_instances = [x["instances"].to(self.device) for x in batched_inputs]
        sampled = self.label_and_sample_proposals(
            self.propose(batched_inputs, images, gt_instances), gt_instances
        )
        rois = convert_boxes_to_rois([p.proposal_boxes for p in sampled])
        _, head = self.region_features(images.tensor, rois)
        return self.box_predictor.losses(self.box_predictor(head), sampled)

    def inference(
        self, batched_inputs: list[dict], do_postprocess: bool = True
    ) -> list[dict] | list[Instances]:
        """Detections for each input, rescaled to its ``height`` x ``width`` when ``do_postprocess``."""
        images = self.preprocess_image(batched_inputs)
        proposals = self.propose(batched_inputs, images)
        rois = convert_boxes_to_rois([p.proposal_boxes for p in proposals])
        predictions = self.predict_regions(images.tensor, rois)
        results = self.box_predictor.inference(predictions, proposals)
        if not do_postprocess:
            return results
        out = []
        for result, inp, (height, width) in zip(results, batched_inputs, images.image_sizes):
            height, width = inp.get("height", height), inp.get("width", width)
            out.append({"instances": detector_postprocess(result, height, width)})
        return out
