"""Optimizer parameter groups for lazy configs.

A config names the optimizer class directly and lets this function split the parameters::

    optimizer = L(torch.optim.SGD)(
        params=L(get_default_optimizer_params)(weight_decay_norm=0.0),
        lr=0.02, momentum=0.9, weight_decay=1e-4,
    )

The model is not known when the config is written: the front door
(:func:`rcnnzoo.engine.default_train.build_optimizer`) sets ``cfg.optimizer.params.model = model``
before ``instantiate(cfg.optimizer)``.
"""

from __future__ import annotations

from typing import Any

from torch import nn

__all__ = ["get_default_optimizer_params", "NORM_MODULE_TYPES"]

# Modules whose parameters are normalization scales/shifts. Decaying them towards zero fights
# the normalization, which is why they usually get their own (often zero) weight decay.
NORM_MODULE_TYPES: tuple[type[nn.Module], ...] = (
    nn.modules.batchnorm._NormBase,  # BatchNorm1d/2d/3d, SyncBatchNorm
    nn.modules.instancenorm._InstanceNorm,
    nn.GroupNorm,
    nn.LayerNorm,
    nn.LocalResponseNorm,
)


def _hyperparams_for(
    module: nn.Module,
    param_name: str,
    base_lr: float | None,
    weight_decay: float | None,
    weight_decay_norm: float | None,
    weight_decay_bias: float | None,
) -> dict[str, float]:
    """The group options of one parameter; an option left out falls back to the optimizer's default."""
    options: dict[str, float | None] = {"lr": base_lr, "weight_decay": weight_decay}
    if isinstance(module, NORM_MODULE_TYPES):
        if weight_decay_norm is not None:
            options["weight_decay"] = weight_decay_norm
    elif param_name == "bias" and weight_decay_bias is not None:
        options["weight_decay"] = weight_decay_bias
    return {k: v for k, v in options.items() if v is not None}


def get_default_optimizer_params(
    model: nn.Module,
    base_lr: float | None = None,
    weight_decay: float | None = None,
    weight_decay_norm: float | None = 0.0,
    weight_decay_bias: float | None = None,
) -> list[dict[str, Any]]:
    """Split the trainable parameters of ``model`` into optimizer parameter groups.

    Parameters of normalization layers (:data:`NORM_MODULE_TYPES`) get ``weight_decay_norm``;
    biases of other layers get ``weight_decay_bias``; the rest get ``weight_decay``. A value of
    ``None`` leaves the option out of the group, so the optimizer's own argument applies (e.g.
    ``SGD(weight_decay=1e-4)``). Frozen parameters (``requires_grad=False``) are left out and a
    parameter shared by several modules appears once.

    Args:
        model: the model to optimize (filled in by the front door, see the module docstring).
        base_lr: learning rate of every group; ``None`` uses the optimizer's ``lr``.
        weight_decay: decay of ordinary weights; ``None`` uses the optimizer's ``weight_decay``.
        weight_decay_norm: decay of normalization parameters; ``None`` treats them as ordinary.
        weight_decay_bias: decay of biases outside norm layers; ``None`` treats them as ordinary.

    Returns:
        A list of ``{"params": [...], **options}`` with one group per distinct set of options.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(
            f"get_default_optimizer_params needs the model as its first argument, got {type(model).__name__}; "
            "set `cfg.optimizer.params.model = model` before instantiate(cfg.optimizer)."
        )
    groups: dict[tuple[tuple[str, float], ...], dict[str, Any]] = {}
    seen: set[int] = set()
    for module in model.modules():
        for name, param in module.named_parameters(recurse=False):
            if not param.requires_grad or id(param) in seen:
                continue
            seen.add(id(param))
            options = _hyperparams_for(
                module, name, base_lr, weight_decay, weight_decay_norm, weight_decay_bias
            )
            key = tuple(sorted(options.items()))
            groups.setdefault(key, {"params": [], **options})["params"].append(param)
    return list(groups.values())
