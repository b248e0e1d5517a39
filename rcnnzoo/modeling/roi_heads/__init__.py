"""RoI heads: box heads, predictors, mask heads, RoI sampling. Background is label ``num_classes``."""

from .box_head import ROI_BOX_HEAD_REGISTRY, FastRCNNConvFCHead, Res5BoxHead, VGG16BoxHead
from .fast_rcnn import ROI_BOX_PREDICTOR_REGISTRY, FastRCNNOutputLayers, fast_rcnn_inference, fast_rcnn_losses
from .mask_head import (
    ROI_MASK_HEAD_REGISTRY,
    MaskRCNNConvUpsampleHead,
    mask_rcnn_inference,
    mask_rcnn_loss,
    mask_rcnn_targets,
)
from .roi_heads import (
    ROI_HEADS_REGISTRY,
    Res5ROIHeads,
    StandardROIHeads,
    sample_rois,
    select_foreground_proposals,
)

__all__ = [
    "ROI_BOX_HEAD_REGISTRY",
    "ROI_BOX_PREDICTOR_REGISTRY",
    "ROI_HEADS_REGISTRY",
    "ROI_MASK_HEAD_REGISTRY",
    "FastRCNNConvFCHead",
    "FastRCNNOutputLayers",
    "MaskRCNNConvUpsampleHead",
    "Res5BoxHead",
    "Res5ROIHeads",
    "StandardROIHeads",
    "VGG16BoxHead",
    "fast_rcnn_inference",
    "fast_rcnn_losses",
    "mask_rcnn_inference",
    "mask_rcnn_loss",
    "mask_rcnn_targets",
    "sample_rois",
    "select_foreground_proposals",
]
