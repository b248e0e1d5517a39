"""Ready-made LR schedules with warmup, as fvcore param schedulers for ``cfg.lr_multiplier``.

A config names one directly::

    from rcnnzoo.solver import cosine_schedule, multistep_schedule
    lr_multiplier = L(cosine_schedule)(max_iter=90000, warmup_iter=1000)
    lr_multiplier = L(multistep_schedule)(max_iter=90000, steps=(60000, 80000), warmup_iter=1000)

or picks one by name with :func:`build_lr_schedule` (``name="cosine"`` / ``"step"``). Iterations are
converted to the fractions of training that fvcore schedules use.
"""

from __future__ import annotations

from collections.abc import Sequence

from fvcore.common.param_scheduler import CosineParamScheduler, MultiStepParamScheduler, ParamScheduler

from .lr_scheduler import WarmupParamScheduler

__all__ = ["cosine_schedule", "multistep_schedule", "build_lr_schedule"]


def _with_warmup(
    scheduler: ParamScheduler, max_iter: int, warmup_iter: int, warmup_factor: float, warmup_method: str
) -> ParamScheduler:
    if max_iter <= 0:
        raise ValueError(f"max_iter must be positive, got {max_iter}")
    if not 0 <= warmup_iter < max_iter:
        raise ValueError(f"warmup_iter must be in [0, max_iter={max_iter}), got {warmup_iter}")
    return WarmupParamScheduler(
        scheduler,
        warmup_factor=warmup_factor,
        warmup_length=warmup_iter / max_iter,
        warmup_method=warmup_method,
    )


def cosine_schedule(
    max_iter: int,
    warmup_iter: int = 1000,
    warmup_factor: float = 0.001,
    final_value: float = 0.0,
    warmup_method: str = "linear",
) -> ParamScheduler:
    """Warmup, then the multiplier follows half a cosine from 1 to ``final_value`` at ``max_iter``.

    Args:
        max_iter: iterations of the whole training.
        warmup_iter: iterations of warmup (0: none); the cosine keeps its own timeline, so warmup
            ends at ``cos`` of ``warmup_iter / max_iter``, not at 1.
        warmup_factor: the multiplier at iteration 0.
        final_value: the multiplier at the end of training.
        warmup_method: ``"linear"`` or ``"constant"``.
    """
    return _with_warmup(
        CosineParamScheduler(start_value=1.0, end_value=final_value),
        max_iter,
        warmup_iter,
        warmup_factor,
        warmup_method,
    )


def multistep_schedule(
    max_iter: int,
    steps: Sequence[int],
    gamma: float = 0.1,
    warmup_iter: int = 1000,
    warmup_factor: float = 0.001,
    warmup_method: str = "linear",
) -> ParamScheduler:
    """Warmup, then the multiplier is 1 and is multiplied by ``gamma`` at each of ``steps``.

    Args:
        max_iter: iterations of the whole training.
        steps: increasing iterations at which the LR drops, each in ``(0, max_iter)``.
        gamma: the factor of each drop.
        warmup_iter, warmup_factor, warmup_method: as for :func:`cosine_schedule`.
    """
    steps = [int(s) for s in steps]
    if any(not 0 < s < max_iter for s in steps) or steps != sorted(set(steps)):
        raise ValueError(f"steps must be increasing iterations in (0, max_iter={max_iter}), got {steps}")
    return _with_warmup(
        MultiStepParamScheduler(
            values=[gamma**i for i in range(len(steps) + 1)], milestones=steps, num_updates=max_iter
        ),
        max_iter,
        warmup_iter,
        warmup_factor,
        warmup_method,
    )


def build_lr_schedule(name: str, **kwargs: object) -> ParamScheduler:
    """``"cosine"`` -> :func:`cosine_schedule`, ``"step"``/``"multistep"`` -> :func:`multistep_schedule`."""
    builders = {"cosine": cosine_schedule, "step": multistep_schedule, "multistep": multistep_schedule}
    if name not in builders:
        raise ValueError(f"Unknown LR schedule {name!r}; choose one of {sorted(builders)}")
    return builders[name](**kwargs)  # type: ignore[arg-type]
