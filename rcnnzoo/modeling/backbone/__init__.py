"""Backbones: ResNet, FPN, VGG16, MobileNet and small CPU nets, registered in BACKBONE_REGISTRY."""

from .backbone import BACKBONE_REGISTRY, Backbone

__all__ = ["BACKBONE_REGISTRY", "Backbone"]
