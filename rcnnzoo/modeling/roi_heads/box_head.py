"""Box heads: turn each pooled RoI feature into a feature vector for the predictor."""

from __future__ import annotations

import torch
from torch import nn

from rcnnzoo.layers import ShapeSpec, get_norm
from rcnnzoo.utils.registry import Registry

__all__ = ["ROI_BOX_HEAD_REGISTRY", "conv_stack", "FastRCNNConvFCHead", "VGG16BoxHead", "Res5BoxHead"]

ROI_BOX_HEAD_REGISTRY = Registry("ROI_BOX_HEAD")
ROI_BOX_HEAD_REGISTRY.__doc__ = """Box heads, built with ``input_shape`` (ShapeSpec of a pooled RoI
feature) filled in by the RoI heads; each exposes ``output_shape`` for the predictor."""



def conv_stack(in_channels: int, conv_dims: list[int] | tuple[int, ...], norm: str = "") -> tuple[nn.Sequential, int]:
    """3x3 conv (+ norm) + ReLU for each of ``conv_dims``; the convs have a bias only without a norm.

    Returns:
        the stack (Tensor[R, in_channels, h, w] -> Tensor[R, conv_dims[-1], h, w]) and its output
        channels (``in_channels`` when ``conv_dims`` is empty).
    """
    layers: list[nn.Module] = []
    channels = in_channels
    for dim in conv_dims:
        norm_layer = get_norm(norm, dim)
        layers.append(nn.Conv2d(channels, dim, 3, padding=1, bias=norm_layer is None))
        if norm_layer is not None:
            layers.append(norm_layer)
        layers.append(nn.ReLU(inplace=True))
        channels = dim
    return nn.Sequential(*layers), channels

@ROI_BOX_HEAD_REGISTRY.register()
class FastRCNNConvFCHead(nn.Module):
    """Optional 3x3 convs, then fully connected layers (FPN's "2fc" head with the defaults).

    Args:
        input_shape: pooled feature shape (channels, height, width).
        conv_dims: channels of each 3x3 conv (none by default).
        fc_dims: width of each FC layer (two 1024-d layers, as in the FPN paper).
        conv_norm: normalization after each conv ("" none, "GN", "BN", ...).
    """

    def __init__(
        self,
        *,
        input_shape: ShapeSpec,
        conv_dims: tuple[int, ...] = (),
        fc_dims: tuple[int, ...] = (1024, 1024),
        conv_norm: str = "",
    ):
        super().__init__()
        if not conv_dims and not fc_dims:
            raise ValueError("FastRCNNConvFCHead needs at least one conv or FC layer")
        channels, h, w = input_shape.channels, input_shape.height or 1, input_shape.width or 1
        self.convs, channels = conv_stack(channels, conv_dims, conv_norm)
        fcs: list[nn.Module] = []
        size = channels * h * w
        for dim in fc_dims:
            fcs += [nn.Linear(size, dim), nn.ReLU(inplace=True)]
            size = dim
        self.fcs = nn.Sequential(*fcs)
        self._output_size = size
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_uniform_(m.weight, a=1)  # "c2_xavier_fill" of the FPN code base
                if m.bias is not None:
                    nn.init.constant_(m.bias, 0)

    @property
    def output_shape(self) -> ShapeSpec:
        return ShapeSpec(channels=self._output_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (Tensor[R, C, h, w]) -> Tensor[R, D]."""
        x = self.convs(x)
        return self.fcs(torch.flatten(x, 1))


@ROI_BOX_HEAD_REGISTRY.register()
class VGG16BoxHead(nn.Module):
    """VGG16's fc6 and fc7 (4096-d, ReLU, dropout) on 7x7x512 RoI features (Fast/Faster R-CNN).

    Parameter names follow torchvision's ``vgg16.classifier`` so its ImageNet weights load.
    """

    def __init__(self, *, input_shape: ShapeSpec, dropout: float = 0.5):
        super().__init__()
        from rcnnzoo.modeling.backbone.vgg import vgg16_fc67

        in_features = input_shape.channels * (input_shape.height or 1) * (input_shape.width or 1)
        self.classifier = vgg16_fc67(in_features=in_features, dropout=dropout)

    @property
    def output_shape(self) -> ShapeSpec:
        return ShapeSpec(channels=4096)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (Tensor[R, C, h, w]) -> Tensor[R, 4096]."""
        return self.classifier(torch.flatten(x, 1))


@ROI_BOX_HEAD_REGISTRY.register()
class Res5BoxHead(nn.Module):
    """ResNet's res5 stage run on each RoI, then global average pooling (the "C4" model).

    The RoI features are pooled 14x14 from res4; res5's first block has stride 2, so the
    head sees 7x7 maps, as in the Faster R-CNN ResNet setup (He et al. 2016).

    ``stride_in_1x1`` must match the backbone's: True for detectron2's / MSRA's weights, False for
    torchvision's.
    """

    def __init__(
        self, *, input_shape: ShapeSpec, depth: int = 50, norm: str = "FrozenBN", stride_in_1x1: bool = False
    ):
        super().__init__()
        from rcnnzoo.modeling.backbone.resnet import make_res5_stage

        self.res5, out_channels = make_res5_stage(depth=depth, norm=norm, stride_in_1x1=stride_in_1x1)
        self._out_channels = out_channels

    @property
    def output_shape(self) -> ShapeSpec:
        return ShapeSpec(channels=self._out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (Tensor[R, 1024, 14, 14]) -> Tensor[R, 2048]."""
        return self.res5(x).mean(dim=(2, 3))
