"""Learning-rate schedules as multipliers of the base LR, applied once per iteration.

A schedule is an fvcore ``ParamScheduler``: a function of the training progress
``where = iteration / max_iter`` in ``[0, 1]`` returning a multiplier. A config writes::

    lr_multiplier = L(WarmupParamScheduler)(
        scheduler=L(MultiStepParamScheduler)(values=[1.0, 0.1, 0.01], milestones=[60000, 80000], num_updates=90000),
        warmup_length=1000 / 90000,   # a fraction of training, not a number of iterations
        warmup_method="linear",
        warmup_factor=0.001,
    )

and the trainer wraps it with :class:`LRMultiplier`, a torch LR scheduler stepped every iteration.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from fvcore.common.param_scheduler import ParamScheduler

__all__ = ["WarmupParamScheduler", "LRMultiplier"]

_WARMUP_METHODS = ("linear", "constant")
_LAST_WHERE = math.nextafter(1.0, 0.0)


class WarmupParamScheduler(ParamScheduler):
    """Ramp ``scheduler`` up from a fraction of its initial value during the first part of training.

    For ``where < warmup_length`` the value goes from ``warmup_factor * scheduler(0)`` to
    ``scheduler(warmup_length)``, linearly (``"linear"``) or held at the start (``"constant"``).
    From ``warmup_length`` on it is ``scheduler(where)``: the wrapped schedule keeps its own
    timeline, so its milestones stay where the config put them.
    """

    def __init__(
        self,
        scheduler: ParamScheduler,
        warmup_factor: float,
        warmup_length: float,
        warmup_method: str = "linear",
    ) -> None:
        """
        Args:
            scheduler: the schedule after warmup (e.g. ``MultiStepParamScheduler``).
            warmup_factor: the multiplier of ``scheduler(0)`` at the first iteration.
            warmup_length: the warmup's share of training, in ``[0, 1)``: ``warmup_iters / max_iter``.
            warmup_method: ``"linear"`` or ``"constant"``.
        """
        if warmup_method not in _WARMUP_METHODS:
            raise ValueError(f"warmup_method must be one of {_WARMUP_METHODS}, got {warmup_method!r}")
        if not 0.0 <= warmup_length < 1.0:
            raise ValueError(
                f"warmup_length is a fraction of training in [0, 1), got {warmup_length}; "
                "for N warmup iterations write N / max_iter."
            )
        self._scheduler = scheduler
        self._warmup_factor = warmup_factor
        self._warmup_length = warmup_length
        self._warmup_method = warmup_method

    def __call__(self, where: float) -> float:
        if where >= self._warmup_length:
            return self._scheduler(where)
        start = self._warmup_factor * self._scheduler(0.0)
        if self._warmup_method == "constant":
            return start
        end = self._scheduler(self._warmup_length)
        alpha = where / self._warmup_length
        return start + alpha * (end - start)


class LRMultiplier(torch.optim.lr_scheduler.LRScheduler):
    """Set every param group's LR to ``base_lr * multiplier(iteration / max_iter)``.

    Step it once per iteration, after ``optimizer.step()`` (the ``LRScheduler`` hook does). Right
    after construction the optimizer holds the LR of iteration 0 (or ``last_iter + 1``).
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        multiplier: ParamScheduler,
        max_iter: int,
        last_iter: int = -1,
    ) -> None:
        """
        Args:
            optimizer: the optimizer whose group LRs (as built) are the base LRs.
            multiplier: maps training progress in ``[0, 1]`` to an LR multiplier.
            max_iter: total iterations; progress is ``iteration / max_iter``.
            last_iter: -1 for a fresh start. To resume, prefer ``load_state_dict`` (the
                checkpointer does it); torch requires ``initial_lr`` in every param group for ``>= 0``.
        """
        if not isinstance(multiplier, ParamScheduler):
            raise TypeError(
                f"multiplier must be an fvcore ParamScheduler, got {type(multiplier).__name__}; "
                "did the config forget to instantiate cfg.lr_multiplier?"
            )
        if max_iter <= 0:
            raise ValueError(f"max_iter must be positive, got {max_iter}")
        self._multiplier = multiplier
        self._max_iter = max_iter
        super().__init__(optimizer, last_epoch=last_iter)

    def get_lr(self) -> list[float]:
        # Past max_iter (e.g. training extended on resume) the schedule holds its final value. Just
        # below 1.0: some fvcore schedules (ConstantParamScheduler) reject where == 1.0, reached by
        # the step after the last iteration.
        where = min(self.last_epoch / self._max_iter, _LAST_WHERE)
        factor = self._multiplier(where)
        return [base_lr * factor for base_lr in self.base_lrs]

    def state_dict(self) -> dict[str, Any]:
        # The multiplier is rebuilt from the config; leaving it out keeps checkpoints loadable
        # with torch.load(weights_only=True), which refuses arbitrary objects.
        return {"base_lrs": list(self.base_lrs), "last_epoch": self.last_epoch}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.base_lrs = list(state_dict["base_lrs"])
        self.last_epoch = int(state_dict["last_epoch"])
        self._last_lr = self.get_lr()
