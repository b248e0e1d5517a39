"""Make a built model cheaper to run for inference: fold normalizations into convs, channels-last.

A trained detector's frozen normalizations are fixed affine maps, ``y = x * scale + shift`` per
channel. Right after a convolution they can be folded into it (``W' = W * scale``,
``b' = b * scale + shift``), which removes two passes over every activation map: on 2 CPU cores
that is about a third of a ResNet-50's time at 800x1216. Channels-last activations then let
oneDNN run every convolution without reordering its input and output (another ~25% of the
backbone), and the RoI poolers gather from them directly (:func:`rcnnzoo.layers.roi_align`).

The result computes the same function up to float rounding (scores within ~1e-5 relative of
the model as built; tests/modeling/test_inference_optimization.py), but its parameters no
longer match its config's state dict: optimize *after* loading a checkpoint, and do not train
or save the optimized model (its parameters are frozen, and :class:`rcnnzoo.checkpoint.Checkpointer`
refuses to save it).

Which convolution feeds which normalization is read from the module structure, never guessed:

* in an ``nn.Sequential`` (torchvision's ``Conv2dNormActivation``, ResNet's downsample branch,
  our conv stacks), a ``Conv2d`` immediately followed by a normalization;
* in the blocks listed in :data:`CONV_NORM_PAIRS` (torchvision's ResNet blocks, our ResNet's
  stem), the named attribute pairs their ``forward`` applies back to back.

A custom module whose ``forward`` applies a conv and then a norm registers its pairs with
:func:`register_conv_norm_pairs`; unregistered modules are left as they are, which is always
correct, only slower.
"""

from __future__ import annotations

import logging

import torch
from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck
from torchvision.ops.misc import FrozenBatchNorm2d as _TvFrozenBN

__all__ = [
    "CONV_NORM_PAIRS",
    "fold_conv_norms",
    "is_optimized_for_inference",
    "optimize_for_inference",
    "register_conv_norm_pairs",
]

logger = logging.getLogger(__name__)

# module type -> (conv attribute, norm attribute) pairs that its forward applies back to back
CONV_NORM_PAIRS: dict[type, tuple[tuple[str, str], ...]] = {
    Bottleneck: (("conv1", "bn1"), ("conv2", "bn2"), ("conv3", "bn3")),
    BasicBlock: (("conv1", "bn1"), ("conv2", "bn2")),
}

_OPTIMIZED_ATTR = "_rcnnzoo_optimized_for_inference"


def register_conv_norm_pairs(module_type: type, pairs: tuple[tuple[str, str], ...]) -> None:
    """Declare that ``module_type.forward`` applies ``getattr(self, conv)`` then ``getattr(self, norm)``
    with nothing else reading the conv's output, for each ``(conv, norm)`` of ``pairs``."""
    CONV_NORM_PAIRS[module_type] = tuple((str(c), str(n)) for c, n in pairs)


def _affine_of(norm: nn.Module) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(scale, shift), Tensor[C] each, of a normalization that is a fixed per-channel affine map
    at inference; ``None`` for any other module (GroupNorm, a BatchNorm in training mode...)."""
    if isinstance(norm, _TvFrozenBN):
        # torchvision's FrozenBatchNorm2d arithmetic: scale = w * rsqrt(var + eps)
        scale = norm.weight * (norm.running_var + norm.eps).rsqrt()
        return scale, norm.bias - norm.running_mean * scale
    if isinstance(norm, nn.modules.batchnorm._BatchNorm) and not norm.training:
        if norm.running_mean is None or norm.running_var is None:
            return None  # no running statistics: normalizes with the batch's, not foldable
        scale = (norm.running_var + norm.eps).rsqrt()
        if norm.affine:
            scale = norm.weight * scale
        shift = -norm.running_mean * scale
        if norm.affine:
            shift = shift + norm.bias
        return scale, shift
    return None


def _fold_into(conv: nn.Module, norm: nn.Module) -> bool:
    """Fold ``norm`` into ``conv`` in place; False (and nothing changed) when it cannot be."""
    if type(conv) is not nn.Conv2d or conv.padding_mode != "zeros":
        return False
    affine = _affine_of(norm)
    if affine is None or affine[0].numel() != conv.out_channels:
        return False
    with torch.no_grad():
        scale, shift = (t.detach().to(conv.weight.dtype) for t in affine)
        weight = conv.weight * scale.reshape(-1, 1, 1, 1)
        bias = shift if conv.bias is None else conv.bias * scale + shift
    conv.weight = nn.Parameter(weight, requires_grad=False)
    conv.bias = nn.Parameter(bias, requires_grad=False)
    return True


def fold_conv_norms(model: nn.Module) -> int:
    """Fold every foldable normalization of ``model`` into the conv before it, in place.

    Folded norms are replaced by ``nn.Identity``. BatchNorms are folded only in eval mode (their
    running statistics are what inference uses); call ``model.eval()`` first.

    Returns:
        the number of normalizations folded.
    """
    folded = 0
    for module in list(model.modules()):
        for conv_name, norm_name in CONV_NORM_PAIRS.get(type(module), ()):
            conv, norm = getattr(module, conv_name, None), getattr(module, norm_name, None)
            if conv is not None and norm is not None and _fold_into(conv, norm):
                setattr(module, norm_name, nn.Identity())
                folded += 1
        if isinstance(module, nn.Sequential):
            names = list(module._modules)
            for first, second in zip(names, names[1:]):
                conv, norm = module._modules[first], module._modules[second]
                if conv is not None and norm is not None and _fold_into(conv, norm):
                    module._modules[second] = nn.Identity()
                    folded += 1
    return folded


def optimize_for_inference(
    model: nn.Module, *, fold_norms: bool = True, channels_last: bool | None = None
) -> nn.Module:
    """Prepare ``model`` (loaded, about to run inference only) to run faster; in place.

    Sets eval mode, freezes every parameter, folds normalizations into convolutions
    (:func:`fold_conv_norms`) and converts 4-D weights to channels-last, so activations follow.

    Args:
        model: a built detector (or any module) with its weights loaded, on its device.
        fold_norms: fold normalizations into the convs before them.
        channels_last: convert conv weights (hence activations) to channels-last memory format.
            ``None``: only for a model on the CPU, where it was measured (1.3x on a ResNet-50
            body); on a GPU it depends on the dtype and the GPU, so choose it yourself.
    Returns:
        ``model`` itself.
    """
    model.eval()
    model.requires_grad_(False)
    if channels_last is None:
        first = next(iter(model.parameters()), None)
        channels_last = first is None or first.device.type == "cpu"
    folded = fold_conv_norms(model) if fold_norms else 0
    if channels_last:
        model.to(memory_format=torch.channels_last)
    setattr(model, _OPTIMIZED_ATTR, True)
    logger.info(
        f"Optimized {type(model).__name__} for inference: {folded} normalizations folded into convs, "
        f"channels-last {'on' if channels_last else 'off'}"
    )
    return model


def is_optimized_for_inference(model: nn.Module) -> bool:
    """Whether :func:`optimize_for_inference` changed ``model`` (its state dict no longer matches its config)."""
    return bool(getattr(model, _OPTIMIZED_ATTR, False))
