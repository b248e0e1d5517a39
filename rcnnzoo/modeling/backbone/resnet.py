"""ResNet backbones (He et al., 2016) built from torchvision's residual blocks.

Parameter names are torchvision's (``conv1``, ``bn1``, ``layer1`` .. ``layer4``), so the
ImageNet checkpoints of ``torchvision.models.resnet{18,34,50,101,152}`` load without renaming
(their ``fc.*`` keys are simply not used). Feature names follow detectron2:

=======  ==================  ======  ===========================
name     torchvision module  stride  channels (18/34 | 50+)
=======  ==================  ======  ===========================
stem     conv1..maxpool      4       64 | 64
res2     layer1              4       64 | 256
res3     layer2              8       128 | 512
res4     layer3              16      256 | 1024
res5     layer4              32      512 | 2048
=======  ==================  ======  ===========================
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck

from rcnnzoo.layers import FrozenBatchNorm2d, ShapeSpec, get_norm
from rcnnzoo.modeling.inference_optimization import register_conv_norm_pairs

from .backbone import BACKBONE_REGISTRY, Backbone

__all__ = ["ResNet", "make_res5_stage", "freeze_module"]

Block = type[BasicBlock] | type[Bottleneck]

# depth -> (block type, number of blocks in res2..res5)
_ARCH: dict[int, tuple[Block, tuple[int, int, int, int]]] = {
    18: (BasicBlock, (2, 2, 2, 2)),
    34: (BasicBlock, (3, 4, 6, 3)),
    50: (Bottleneck, (3, 4, 6, 3)),
    101: (Bottleneck, (3, 4, 23, 3)),
    152: (Bottleneck, (3, 8, 36, 3)),
}
_STAGES = ("res2", "res3", "res4", "res5")
_STEM_CHANNELS = 64


def freeze_module(module: nn.Module) -> nn.Module:
    """Stop training ``module``: every parameter gets ``requires_grad=False`` and every
    BatchNorm becomes a :class:`FrozenBatchNorm2d` (otherwise its running statistics would
    still move in train mode). Returns the module to use instead (a new one if ``module``
    itself was a BatchNorm).
    """
    module = FrozenBatchNorm2d.convert_frozen_batchnorm(module)
    for p in module.parameters():
        p.requires_grad_(False)
    return module


def _norm_factory(norm: str) -> Callable[[int], nn.Module]:
    """``channels -> norm layer`` for torchvision's ``norm_layer`` argument."""
    if not norm:
        # torchvision's blocks use bias-free convs that rely on the norm's affine shift.
        raise ValueError("ResNet needs a norm ('FrozenBN', 'BN', 'SyncBN' or 'GN'), got ''")
    get_norm(norm, 8)  # fail now, with the list of valid names, on an unknown norm
    return lambda channels: get_norm(norm, channels)


def _check_depth(depth: int) -> tuple[Block, tuple[int, int, int, int]]:
    if depth not in _ARCH:
        raise ValueError(f"ResNet depth must be one of {sorted(_ARCH)}, got {depth}")
    return _ARCH[depth]


def _stage_channels(block: Block) -> tuple[int, int, int, int]:
    """Output channels of res2..res5."""
    return tuple(64 * 2**i * block.expansion for i in range(4))  # type: ignore[return-value]


def _init_conv_weights(module: nn.Module) -> None:
    """torchvision's ResNet init: He normal (fan_out) for convs; norms start at identity."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")


def _move_stride_to_1x1(stage: nn.Sequential) -> None:
    """MSRA / Caffe2 ResNets stride in the first 1x1 conv, torchvision (v1.5) in the 3x3 one."""
    first = stage[0]
    if isinstance(first, Bottleneck) and first.conv2.stride != (1, 1):
        first.conv1.stride, first.conv2.stride = first.conv2.stride, (1, 1)


def _make_stage(
    block: Block,
    in_channels: int,
    planes: int,
    num_blocks: int,
    stride: int,
    norm_layer: Callable[[int], nn.Module],
    stride_in_1x1: bool = False,
) -> nn.Sequential:
    """One torchvision ``layerN``: ``num_blocks`` residual blocks, the first one strided.

    Keys come out as torchvision's: ``0.conv1.weight``, ``0.downsample.0.weight``, ...
    """
    out_channels = planes * block.expansion
    downsample = None
    if stride != 1 or in_channels != out_channels:
        downsample = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=stride, bias=False),
            norm_layer(out_channels),
        )
    blocks = [block(in_channels, planes, stride, downsample, norm_layer=norm_layer)]
    blocks += [block(out_channels, planes, norm_layer=norm_layer) for _ in range(1, num_blocks)]
    stage = nn.Sequential(*blocks)
    if stride_in_1x1:
        _move_stride_to_1x1(stage)
    _init_conv_weights(stage)
    return stage


def make_res5_stage(
    *, depth: int, norm: str = "FrozenBN", stride_in_1x1: bool = False
) -> tuple[nn.Sequential, int]:
    """A fresh res5 (torchvision ``layer4``) for the C4 box head, which runs it on RoI features.

    Its keys are torchvision's ``layer4.*`` minus the prefix (``0.conv1.weight``, ...), so
    ``layer4.`` -> ``<head>.res5.`` is the whole checkpoint mapping. The first block has stride 2:
    RoIs pooled 14x14 from res4 leave it 7x7.

    Args:
        depth: 18, 34, 50, 101 or 152; the input channels (res4's) follow from it.
        norm: normalization name for :func:`rcnnzoo.layers.get_norm`.
        stride_in_1x1: put the stride in the first 1x1 conv (MSRA weights) instead of the 3x3.

    Returns:
        (stage, out_channels): ``stage`` maps Tensor[R, C4, 14, 14] -> Tensor[R, C5, 7, 7].
    """
    block, num_blocks = _check_depth(depth)
    channels = _stage_channels(block)
    stage = _make_stage(
        block, channels[2], 512, num_blocks[3], 2, _norm_factory(norm), stride_in_1x1=stride_in_1x1
    )
    return stage, channels[3]


@BACKBONE_REGISTRY.register()
class ResNet(Backbone):
    """ResNet-18/34/50/101/152 returning any of ``stem``, ``res2`` .. ``res5``.

    Stages after the last requested output are not built: a C4 model asking for ``("res4",)``
    carries no ``layer4`` (its res5 lives in the box head, see :func:`make_res5_stage`).
    """

    def __init__(
        self,
        *,
        depth: int = 50,
        out_features: tuple[str, ...] | list[str] = ("res2", "res3", "res4", "res5"),
        norm: str = "FrozenBN",
        freeze_at: int = 2,
        stride_in_1x1: bool = False,
    ) -> None:
        """
        Args:
            depth: 18, 34, 50, 101 or 152.
            out_features: names to return, a subset of ``stem, res2, res3, res4, res5``.
            norm: ``"FrozenBN"`` (fine-tuning from ImageNet), ``"BN"``, ``"SyncBN"`` or ``"GN"``.
            freeze_at: 0 trains everything, 1 freezes the stem (conv1 + bn1), k in 2..5 also
                freezes res2 .. res_k. Frozen parts get ``requires_grad=False`` and FrozenBN.
            stride_in_1x1: stride in the 1x1 conv of bottleneck blocks (MSRA weights);
                torchvision's weights want the default ``False``.
        """
        super().__init__()
        block, num_blocks = _check_depth(depth)
        self._out_features = _check_out_features(out_features)
        if not 0 <= freeze_at <= 5:
            raise ValueError(f"freeze_at must be in 0..5, got {freeze_at}")
        norm_layer = _norm_factory(norm)
        channels = _stage_channels(block)

        self.conv1 = nn.Conv2d(3, _STEM_CHANNELS, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = norm_layer(_STEM_CHANNELS)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        _init_conv_weights(self.conv1)
        self._shapes = {"stem": ShapeSpec(channels=_STEM_CHANNELS, stride=4)}

        self._num_stages = _num_stages_needed(self._out_features)
        in_channels = _STEM_CHANNELS
        for i in range(self._num_stages):
            stride = 1 if i == 0 else 2  # res2 follows the stem's max pool, already at stride 4
            stage = _make_stage(
                block, in_channels, 64 * 2**i, num_blocks[i], stride, norm_layer, stride_in_1x1
            )
            self.add_module(f"layer{i + 1}", stage)
            self._shapes[_STAGES[i]] = ShapeSpec(channels=channels[i], stride=4 * 2**i)
            in_channels = channels[i]
        self._freeze(freeze_at)

    def _freeze(self, freeze_at: int) -> None:
        if freeze_at >= 1:
            self.conv1 = freeze_module(self.conv1)
            self.bn1 = freeze_module(self.bn1)
        for i in range(1, min(freeze_at, self._num_stages + 1)):
            freeze_module(getattr(self, f"layer{i}"))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """
        Args:
            x (Tensor[N, 3, H, W]): normalized images.

        Returns:
            name -> Tensor[N, C, ceil(H / stride), ceil(W / stride)] for each requested name.
        """
        if x.dim() != 4:
            raise ValueError(f"ResNet takes a Tensor[N, C, H, W], got shape {tuple(x.shape)}")
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        outputs = {"stem": x} if "stem" in self._out_features else {}
        for i in range(self._num_stages):
            x = getattr(self, f"layer{i + 1}")(x)
            if _STAGES[i] in self._out_features:
                outputs[_STAGES[i]] = x
        return outputs

    def output_shape(self) -> dict[str, ShapeSpec]:
        return {name: self._shapes[name] for name in self._out_features}


# forward applies the stem's conv1 then bn1: optimize_for_inference may fold them
register_conv_norm_pairs(ResNet, (("conv1", "bn1"),))


def _check_out_features(out_features: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    valid = ("stem", *_STAGES)
    if isinstance(out_features, str) or not out_features:
        raise ValueError(f"out_features must be a non-empty list of names from {valid}, got {out_features!r}")
    unknown = [n for n in out_features if n not in valid]
    if unknown:
        raise ValueError(f"Unknown ResNet out_features {unknown}; valid: {', '.join(valid)}")
    return tuple(n for n in valid if n in out_features)  # network order, like forward()'s dict


def _num_stages_needed(out_features: tuple[str, ...]) -> int:
    """How many of res2..res5 must be built to produce ``out_features``."""
    return max((_STAGES.index(n) + 1 for n in out_features if n in _STAGES), default=0)
