"""Gradient clipping between ``backward()`` and ``optimizer.step()``.

A config turns it on with ``train.clip_grad``::

    train.clip_grad = dict(enabled=True, type="norm", value=1.0, norm_type=2.0)   # or type="value"

Without the key (or with ``enabled=False``) gradients are left alone.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch

__all__ = ["GradClipper", "build_grad_clipper", "grad_clipper_from_config"]

# Called with the parameters after backward; returns the total gradient norm before clipping
# when clipping by norm, else None.
GradClipper = Callable[[Iterable[torch.Tensor]], "torch.Tensor | None"]

_CLIP_TYPES = ("norm", "value")


def build_grad_clipper(clip_type: str = "norm", value: float = 1.0, norm_type: float = 2.0) -> GradClipper:
    """A function that clips the gradients of the parameters it is given, in place.

    Args:
        clip_type: ``"norm"``: scale all gradients together so their total ``norm_type``-norm is at
            most ``value`` (``torch.nn.utils.clip_grad_norm_``); ``"value"``: clamp every element
            to ``[-value, value]`` (``clip_grad_value_``).
        value: the maximum norm, or the maximum absolute value of an element; > 0.
        norm_type: the norm for ``"norm"`` (2.0, or ``float("inf")`` for the max-norm).

    Returns:
        ``clip(params) -> total_norm`` (a 0-dim tensor, the norm before clipping) for ``"norm"``,
        ``clip(params) -> None`` for ``"value"``.
    """
    if clip_type not in _CLIP_TYPES:
        raise ValueError(f"clip_type must be one of {_CLIP_TYPES}, got {clip_type!r}")
    if not value > 0:
        raise ValueError(f"The clipping value must be positive, got {value}")
    if clip_type == "norm":

        def clip_norm(params: Iterable[torch.Tensor]) -> torch.Tensor:
            return torch.nn.utils.clip_grad_norm_(list(params), value, norm_type=norm_type)

        return clip_norm

    def clip_value(params: Iterable[torch.Tensor]) -> None:
        torch.nn.utils.clip_grad_value_(list(params), value)

    return clip_value


def grad_clipper_from_config(clip_cfg: Mapping[str, Any] | None) -> GradClipper | None:
    """``train.clip_grad`` -> a clipper, or ``None`` when the node is absent, empty or ``enabled=False``.

    Keys: ``enabled`` (default True when the node is given), ``type`` (``"norm"``), ``value`` (1.0),
    ``norm_type`` (2.0).
    """
    if not clip_cfg or not clip_cfg.get("enabled", True):
        return None
    unknown = set(clip_cfg) - {"enabled", "type", "value", "norm_type"}
    if unknown:
        raise KeyError(
            f"train.clip_grad has unknown keys {sorted(unknown)}; use enabled, type, value, norm_type"
        )
    return build_grad_clipper(
        clip_type=clip_cfg.get("type", "norm"),
        value=float(clip_cfg.get("value", 1.0)),
        norm_type=float(clip_cfg.get("norm_type", 2.0)),
    )
