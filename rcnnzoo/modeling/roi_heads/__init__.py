"""RoI heads: box heads, predictors, RoI sampling. Background is label ``num_classes``."""

from .box_head import ROI_BOX_HEAD_REGISTRY, FastRCNNConvFCHead, Res5BoxHead, VGG16BoxHead
from .fast_rcnn import ROI_BOX_PREDICTOR_REGISTRY, FastRCNNOutputLayers, fast_rcnn_inference, fast_rcnn_losses
from .roi_heads import ROI_HEADS_REGISTRY, StandardROIHeads, sample_rois

__all__ = [
    "ROI_BOX_HEAD_REGISTRY",
    "ROI_BOX_PREDICTOR_REGISTRY",
    "ROI_HEADS_REGISTRY",
    "FastRCNNConvFCHead",
    "FastRCNNOutputLayers",
    "Res5BoxHead",
    "StandardROIHeads",
    "VGG16BoxHead",
    "fast_rcnn_inference",
    "fast_rcnn_losses",
    "sample_rois",
]
