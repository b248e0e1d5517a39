"""Models: registries of backbones, proposal generators, poolers, heads and meta-architectures.

Importing this package registers every built-in part.
"""

from rcnnzoo.layers import ShapeSpec

from .anchor_generator import ANCHOR_GENERATOR_REGISTRY, DefaultAnchorGenerator
from .backbone import BACKBONE_REGISTRY, FPN, VGG16, Backbone, MobileNetV3, ResNet, TinyNet
from .box_regression import Box2BoxTransform
from .inference_optimization import fold_conv_norms, optimize_for_inference, register_conv_norm_pairs
from .matcher import Matcher
from .meta_arch import META_ARCH_REGISTRY, RCNN, GeneralizedRCNN, ProposalNetwork
from .poolers import ROI_POOLER_REGISTRY, RoIAlign, RoIPool, SPPPooler
from .proposal_generator import (
    PROPOSAL_GENERATOR_REGISTRY,
    RPN,
    RPN_HEAD_REGISTRY,
    PrecomputedProposals,
    SelectiveSearch,
    StandardRPNHead,
)
from .roi_heads import (
    ROI_BOX_HEAD_REGISTRY,
    ROI_BOX_PREDICTOR_REGISTRY,
    ROI_HEADS_REGISTRY,
    ROI_MASK_HEAD_REGISTRY,
    FastRCNNConvFCHead,
    FastRCNNOutputLayers,
    LinearSVMOutputLayers,
    MaskRCNNConvUpsampleHead,
    Res5BoxHead,
    Res5ROIHeads,
    StandardROIHeads,
    VGG16BoxHead,
)

__all__ = [
    "fold_conv_norms",
    "optimize_for_inference",
    "register_conv_norm_pairs",
    "ANCHOR_GENERATOR_REGISTRY",
    "BACKBONE_REGISTRY",
    "META_ARCH_REGISTRY",
    "PROPOSAL_GENERATOR_REGISTRY",
    "ROI_BOX_HEAD_REGISTRY",
    "ROI_BOX_PREDICTOR_REGISTRY",
    "ROI_HEADS_REGISTRY",
    "ROI_MASK_HEAD_REGISTRY",
    "ROI_POOLER_REGISTRY",
    "RPN",
    "RPN_HEAD_REGISTRY",
    "Backbone",
    "FPN",
    "MobileNetV3",
    "ResNet",
    "TinyNet",
    "VGG16",
    "Box2BoxTransform",
    "DefaultAnchorGenerator",
    "FastRCNNConvFCHead",
    "FastRCNNOutputLayers",
    "GeneralizedRCNN",
    "LinearSVMOutputLayers",
    "Matcher",
    "MaskRCNNConvUpsampleHead",
    "PrecomputedProposals",
    "ProposalNetwork",
    "RCNN",
    "Res5BoxHead",
    "Res5ROIHeads",
    "RoIAlign",
    "RoIPool",
    "SPPPooler",
    "SelectiveSearch",
    "ShapeSpec",
    "StandardROIHeads",
    "StandardRPNHead",
    "VGG16BoxHead",
]
