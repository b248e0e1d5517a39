"""The backbone protocol and its registry."""

from __future__ import annotations

from abc import ABCMeta, abstractmethod

import torch
from torch import nn

from rcnnzoo.layers import ShapeSpec
from rcnnzoo.utils.registry import Registry

__all__ = ["Backbone", "BACKBONE_REGISTRY"]

BACKBONE_REGISTRY = Registry("BACKBONE")
BACKBONE_REGISTRY.__doc__ = """Backbones: ``nn.Module`` subclasses of :class:`Backbone`, built with keyword args."""


class Backbone(nn.Module, metaclass=ABCMeta):
    """A network that maps a normalized image batch to named feature maps.

    Subclasses implement :meth:`forward` and :meth:`output_shape`; downstream parts
    (RPN, poolers, heads) read the channels and strides they need from ``output_shape()``,
    so configs never restate them.
    """

    @abstractmethod
    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Args: x (Tensor[N, C, H, W]). Returns: name -> Tensor[N, Ci, H/si, W/si]."""

    @abstractmethod
    def output_shape(self) -> dict[str, ShapeSpec]:
        """Name -> ShapeSpec(channels, stride) of every output feature."""

    @property
    def size_divisibility(self) -> int:
        """Input H and W are padded to a multiple of this (0: no constraint)."""
        return 0
