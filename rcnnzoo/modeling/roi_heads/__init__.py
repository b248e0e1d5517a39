"""RoI heads: box heads, predictors, mask heads, RoI sampling. Background is label ``num_classes``."""

from .box_head import ROI_BOX_HEAD_REGISTRY, FastRCNNConvFCHead, Res5BoxHead, VGG16BoxHead
from .fast_rcnn import (
    ROI_BOX_PREDICTOR_REGISTRY,
    FastRCNNOutputLayers,
    fast_rcnn_box_loss,
    fast_rcnn_inference,
    fast_rcnn_losses,
)
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
from .svm_head import LinearSVMOutputLayers, class_max_ious, svm_hinge_loss, svm_targets
from .svm_training import fit_linear_svm, train_linear_svms

__all__ = [
    "ROI_BOX_HEAD_REGISTRY",
    "ROI_BOX_PREDICTOR_REGISTRY",
    "ROI_HEADS_REGISTRY",
    "ROI_MASK_HEAD_REGISTRY",
    "FastRCNNConvFCHead",
    "FastRCNNOutputLayers",
    "LinearSVMOutputLayers",
    "MaskRCNNConvUpsampleHead",
    "Res5BoxHead",
    "Res5ROIHeads",
    "StandardROIHeads",
    "VGG16BoxHead",
    "class_max_ious",
    "fast_rcnn_box_loss",
    "fast_rcnn_inference",
    "fast_rcnn_losses",
    "fit_linear_svm",
    "mask_rcnn_inference",
    "mask_rcnn_loss",
    "mask_rcnn_targets",
    "sample_rois",
    "select_foreground_proposals",
    "svm_hinge_loss",
    "svm_targets",
    "train_linear_svms",
]
