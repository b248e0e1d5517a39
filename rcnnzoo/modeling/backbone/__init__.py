"""Backbones: ResNet, FPN, VGG16, MobileNetV3 and TinyNet, registered in BACKBONE_REGISTRY.

Importing this package registers every built-in backbone.
"""

from .backbone import BACKBONE_REGISTRY, Backbone
from .fpn import FPN, LastLevelMaxPool, LastLevelP6P7
from .mobilenet import MobileNetV3
from .resnet import ResNet, freeze_module, make_res5_stage
from .tiny import TinyNet
from .vgg import VGG16, VGGFc67, vgg16_fc67

__all__ = [
    "BACKBONE_REGISTRY",
    "FPN",
    "VGG16",
    "Backbone",
    "LastLevelMaxPool",
    "LastLevelP6P7",
    "MobileNetV3",
    "ResNet",
    "TinyNet",
    "VGGFc67",
    "freeze_module",
    "make_res5_stage",
    "vgg16_fc67",
]
