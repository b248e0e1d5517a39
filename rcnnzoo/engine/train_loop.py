"""The training loop: a trainer runs ``run_step`` per iteration and calls hooks around it.

    trainer.train(start_iter, max_iter):
        hook.before_train()                  for every hook
        for iter in range(start_iter, max_iter):
            hook.before_step()
            trainer.run_step()               one batch: forward, loss, backward, optimizer step
            hook.after_step()
        hook.after_train()                   always, even after an exception

Hooks run in order of ``priority`` (lower first) and, within a priority, in registration order.
"""

from __future__ import annotations

import logging
import math
import time
import weakref
from collections.abc import Iterable, Iterator, Mapping
from enum import IntEnum
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from rcnnzoo.solver.grad_clip import GradClipper
from rcnnzoo.utils.comm import get_world_size
from rcnnzoo.utils.events import EventStorage

__all__ = ["Priority", "HookBase", "TrainerBase", "SimpleTrainer", "AMPTrainer"]

logger = logging.getLogger(__name__)


class Priority(IntEnum):
    """Hook ordering: lower runs first in every stage."""

    HIGHEST = 0
    HIGH = 25
    NORMAL = 50
    LOW = 75
    LOWEST = 100


class HookBase:
    """A hook: code run at fixed points of training. Override only the stages you need.

    ``self.trainer`` is a weak proxy to the trainer, set by :meth:`TrainerBase.register_hooks`,
    so a hook can read ``trainer.iter``, ``trainer.max_iter``, ``trainer.model``, ``trainer.storage``.
    ``before_step`` runs every iteration before the batch: keep it cheap.
    """

    priority: int = Priority.NORMAL
    trainer: TrainerBase

    def before_train(self) -> None:
        """Called once before the first iteration."""

    def after_train(self) -> None:
        """Called once after the last iteration, or after training stopped with an exception."""

    def before_step(self) -> None:
        """Called before each iteration."""

    def after_step(self) -> None:
        """Called after each iteration."""

    def every_n_iters(self, n: int) -> bool:
        """Whether the iteration that just ran completes a multiple of ``n`` iterations."""
        return n > 0 and (self.trainer.iter + 1) % n == 0

    def is_last_iter(self) -> bool:
        """Whether the iteration that just ran is the last one."""
        return self.trainer.iter + 1 >= self.trainer.max_iter


class TrainerBase:
    """A loop over iterations with hooks and an :class:`EventStorage`; subclasses define ``run_step``.

    Attributes:
        iter: the current iteration (the one running, or the last one run after training).
        start_iter: the first iteration of this run (> 0 when resuming).
        max_iter: training stops before this iteration.
        storage: the :class:`EventStorage` open during :meth:`train`.
    """

    def __init__(self) -> None:
        self._hooks: list[HookBase] = []
        self.iter = 0
        self.start_iter = 0
        self.max_iter = 0
        self.storage: EventStorage

    @property
    def hooks(self) -> list[HookBase]:
        """The registered hooks in the order they run."""
        return list(self._hooks)

    def register_hooks(self, hooks: Iterable[HookBase | None]) -> None:
        """Attach hooks (``None`` entries are ignored) and sort all hooks by priority (stable)."""
        for h in hooks:
            if h is None:
                continue
            if not isinstance(h, HookBase):
                raise TypeError(f"Hooks must subclass HookBase, got {type(h).__name__}")
            # A proxy, not a reference: trainer -> hook -> trainer would be a reference cycle.
            h.trainer = weakref.proxy(self)
            self._hooks.append(h)
        self._hooks.sort(key=lambda h: h.priority)

    def train(self, start_iter: int, max_iter: int) -> None:
        """Run iterations ``start_iter .. max_iter - 1``.

        An exception is logged with the iteration it happened at and re-raised; ``after_train``
        hooks run in any case.
        """
        logger.info(f"Starting training from iteration {start_iter}")
        self.iter = self.start_iter = start_iter
        self.max_iter = max_iter
        with EventStorage(start_iter) as self.storage:
            try:
                self.before_train()
                for self.iter in range(start_iter, max_iter):
                    self.before_step()
                    self.run_step()
                    self.after_step()
            except Exception:
                logger.exception(f"Exception during training at iteration {self.iter}:")
                raise
            finally:
                self.after_train()

    # The four stages call every hook; after_train/before_step also keep storage.iter current.
    def before_train(self) -> None:
        for h in self._hooks:
            h.before_train()

    def after_train(self) -> None:
        self.storage.iter = self.iter
        for h in self._hooks:
            h.after_train()

    def before_step(self) -> None:
        self.storage.iter = self.iter
        for h in self._hooks:
            h.before_step()

    def after_step(self) -> None:
        for h in self._hooks:
            h.after_step()

    def run_step(self) -> None:
        """Train on one batch; subclasses implement it."""
        raise NotImplementedError


def _as_loss_dict(output: Any) -> dict[str, torch.Tensor]:
    """Validate the model's training output: a dict of scalar tensors (a bare tensor is ``total_loss``)."""
    if isinstance(output, torch.Tensor):
        output = {"total_loss": output}
    if not isinstance(output, Mapping):
        raise TypeError(
            f"In training mode the model must return a dict of losses, got {type(output).__name__}"
        )
    for name, value in output.items():
        if not isinstance(value, torch.Tensor) or value.numel() != 1:
            shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
            raise TypeError(f"Loss {name!r} must be a scalar tensor, got {shape}")
    return dict(output)


class SimpleTrainer(TrainerBase):
    """One optimizer step per batch: load, forward, sum the losses, backward, step.

    ``run_step`` is split into :meth:`next_batch`, :meth:`forward`, :meth:`record_losses` and
    :meth:`backward_and_step`; override one of them to change one part (``AMPTrainer`` overrides
    the forward and the backward). Wrap the model or the loader for anything else.
    """

    def __init__(
        self,
        model: nn.Module,
        data_loader: Iterable[Any],
        optimizer: torch.optim.Optimizer,
        *,
        grad_clipper: GradClipper | None = None,
    ) -> None:
        """
        Args:
            model: returns a dict of scalar losses for ``model(batch)`` in training mode.
            data_loader: an (infinite) iterable of batches, e.g. ``list[dict]``.
            optimizer: steps the model's parameters.
            grad_clipper: called with the optimizer's parameters between backward and step
                (:func:`rcnnzoo.solver.build_grad_clipper`); a returned norm is recorded as ``grad_norm``.
        """
        super().__init__()
        model.train()
        self.model = model
        self.data_loader = data_loader
        self.optimizer = optimizer
        self.grad_clipper = grad_clipper
        self._data_loader_iter_obj: Iterator[Any] | None = None

    @property
    def _data_loader_iter(self) -> Iterator[Any]:
        # Created on first use, so loader workers start when training does, not at construction.
        if self._data_loader_iter_obj is None:
            self._data_loader_iter_obj = iter(self.data_loader)
        return self._data_loader_iter_obj

    def run_step(self) -> None:
        if not self.model.training:
            raise RuntimeError(
                "SimpleTrainer: the model was switched to eval mode and not back; call model.train()"
            )
        data, data_time = self.next_batch()
        loss_dict = self.forward(data)
        self.record_losses(loss_dict, data_time, data)
        self.backward_and_step(sum(loss_dict.values()))

    def next_batch(self) -> tuple[Any, float]:
        """The next batch and the seconds spent waiting for it."""
        start = time.perf_counter()
        data = next(self._data_loader_iter)
        return data, time.perf_counter() - start

    def forward(self, data: Any) -> dict[str, torch.Tensor]:
        """The model's losses for ``data``."""
        return _as_loss_dict(self.model(data))

    def record_losses(self, loss_dict: dict[str, torch.Tensor], data_time: float, data: Any = None) -> None:
        """Put the losses (averaged over processes), ``total_loss`` and ``data_time`` into the storage.

        Args:
            data: the batch the losses came from; named in the error when a loss is not finite.

        Raises:
            FloatingPointError: when a loss is NaN or infinite, naming it, the iteration and the
                batch's images (on every process alike).
        """
        names = sorted(loss_dict)
        # One stacked tensor: a single device->host copy per step instead of one per loss.
        values = torch.stack([loss_dict[n].detach().float().reshape(()) for n in names])
        if get_world_size() > 1:
            dist.all_reduce(values)
            values /= get_world_size()
        losses = dict(zip(names, values.tolist()))
        bad = [f"{n}={v}" for n, v in losses.items() if not math.isfinite(v)]
        if bad:
            raise FloatingPointError(
                f"Loss became NaN or infinite at iteration {self.iter}: {', '.join(bad)} "
                f"(all losses: {losses}). Images of this process's batch: {_describe_batch(data)}. "
                "Check these images' boxes (tools/check_dataset.py), or lower the learning rate."
            )
        self.storage.put_scalars(total_loss=sum(losses.values()), **losses)
        self.storage.put_scalar("data_time", data_time)

    def backward_and_step(self, total_loss: torch.Tensor) -> None:
        """Compute gradients of ``total_loss``, clip them if asked, and update the parameters."""
        self.optimizer.zero_grad(set_to_none=True)
        total_loss.backward()
        self.clip_gradients()
        self.optimizer.step()

    def clip_gradients(self) -> None:
        """Apply ``grad_clipper`` (if any) to the (unscaled) gradients of the optimizer's parameters."""
        if self.grad_clipper is None:
            return
        params = [p for group in self.optimizer.param_groups for p in group["params"] if p.grad is not None]
        norm = self.grad_clipper(params)
        if norm is not None:
            self.storage.put_scalar("grad_norm", float(norm))


def _describe_batch(data: Any) -> str:
    """The image ids (or file names) of a batch of dataset dicts, for error messages."""
    if not isinstance(data, (list, tuple)) or not data:
        return "unknown"
    names = []
    for d in data:
        if not isinstance(d, dict):
            return "unknown"
        parts = [str(d[k]) for k in ("image_id", "file_name") if d.get(k) is not None]
        names.append(" ".join(parts[:1] + [f"({p})" for p in parts[1:]]) or "?")
    return ", ".join(names)


# Short and torch spellings; configs write ``train.amp.dtype="bfloat16"``.
_PRECISIONS = {
    "fp16": torch.float16,
    "float16": torch.float16,
    "bf16": torch.bfloat16,
    "bfloat16": torch.bfloat16,
}


class AMPTrainer(SimpleTrainer):
    """:class:`SimpleTrainer` with the forward under ``torch.autocast``.

    ``"fp16"`` scales the loss with a ``GradScaler`` so small gradients do not underflow;
    ``"bf16"`` has fp32's exponent range and needs no scaler.
    """

    def __init__(
        self,
        model: nn.Module,
        data_loader: Iterable[Any],
        optimizer: torch.optim.Optimizer,
        *,
        precision: str = "fp16",
        grad_scaler: torch.amp.GradScaler | None = None,
        grad_clipper: GradClipper | None = None,
    ) -> None:
        """
        Args:
            model, data_loader, optimizer, grad_clipper: as for :class:`SimpleTrainer`.
            precision: ``"fp16"``/``"float16"`` or ``"bf16"``/``"bfloat16"``.
            grad_scaler: the scaler for fp16; by default a new one for the model's device type.
        """
        if precision not in _PRECISIONS:
            raise ValueError(f"precision must be one of {sorted(_PRECISIONS)}, got {precision!r}")
        super().__init__(model, data_loader, optimizer, grad_clipper=grad_clipper)
        self.precision = precision
        first_param = next(model.parameters(), None)
        self.device_type = first_param.device.type if first_param is not None else "cpu"
        fp16 = _PRECISIONS[precision] == torch.float16
        if fp16 and grad_scaler is None:
            grad_scaler = torch.amp.GradScaler(self.device_type)
        self.grad_scaler = grad_scaler if fp16 else None

    def forward(self, data: Any) -> dict[str, torch.Tensor]:
        with torch.autocast(self.device_type, dtype=_PRECISIONS[self.precision]):
            return super().forward(data)

    def backward_and_step(self, total_loss: torch.Tensor) -> None:
        if self.grad_scaler is None:
            super().backward_and_step(total_loss)
            return
        self.optimizer.zero_grad(set_to_none=True)
        self.grad_scaler.scale(total_loss).backward()
        if self.grad_clipper is not None:
            self.grad_scaler.unscale_(self.optimizer)  # clip the true gradients, not the scaled ones
            self.clip_gradients()
        self.grad_scaler.step(self.optimizer)
        self.grad_scaler.update()
