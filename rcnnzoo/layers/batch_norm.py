"""Normalization layers chosen by name in configs."""

from __future__ import annotations

from torch import nn
from torchvision.ops.misc import FrozenBatchNorm2d as _TvFrozenBN

__all__ = ["FrozenBatchNorm2d", "get_norm", "NORMS"]


class FrozenBatchNorm2d(_TvFrozenBN):
    """BatchNorm with fixed statistics and affine parameters (buffers, not parameters).

    Same arithmetic as torchvision's, so torchvision checkpoints load unchanged.
    """

    @classmethod
    def convert_frozen_batchnorm(cls, module: nn.Module) -> nn.Module:
        """Replace every ``BatchNorm2d`` / ``SyncBatchNorm`` in ``module`` by a frozen copy."""
        if isinstance(module, (nn.BatchNorm2d, nn.SyncBatchNorm)):
            frozen = cls(module.num_features, eps=module.eps)
            if module.affine:
                frozen.weight.copy_(module.weight.detach())
                frozen.bias.copy_(module.bias.detach())
            if module.running_mean is not None:
                frozen.running_mean.copy_(module.running_mean)
                frozen.running_var.copy_(module.running_var)
            return frozen
        for name, child in module.named_children():
            new = cls.convert_frozen_batchnorm(child)
            if new is not child:
                setattr(module, name, new)
        return module


def _group_norm(channels: int) -> nn.Module:
    return nn.GroupNorm(32 if channels % 32 == 0 else 8, channels)


NORMS = {
    "BN": nn.BatchNorm2d,
    "SyncBN": nn.SyncBatchNorm,
    "FrozenBN": FrozenBatchNorm2d,
    "GN": _group_norm,
}


def get_norm(norm: str | None, channels: int) -> nn.Module | None:
    """Build a normalization layer by name: ``"BN"``, ``"SyncBN"``, ``"FrozenBN"``, ``"GN"``.

    ``""`` or ``None`` means no normalization and returns ``None``.
    """
    if not norm:
        return None
    if norm not in NORMS:
        raise ValueError(f"Unknown norm {norm!r}; valid: {', '.join(NORMS)} or '' for none")
    return NORMS[norm](channels)


