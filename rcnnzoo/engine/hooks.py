"""Hooks of the training loop, each doing one thing.

A typical list, in the order they run (their priorities enforce the first and last place)::

    IterationTimer()                                  # "time" per iteration; first, to time the step alone
    LRScheduler(scheduler)                            # "lr"; steps the schedule
    PeriodicCheckpointer(checkpointer, period, max_iter)
    EvalHook(eval_period, lambda: do_test(cfg, model))
    BestCheckpointer(checkpointer, "bbox/AP", "max")  # after the evaluation it reads
    PeriodicWriter(writers, period)                   # last, so it sees everything recorded this step

Periodic hooks act after the iteration ``i`` with ``(i + 1) % period == 0`` and after the last one.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch

from rcnnzoo.checkpoint import Checkpointer, preserved_rng_state
from rcnnzoo.utils.comm import synchronize
from rcnnzoo.utils.events import EventWriter

from .train_loop import HookBase, Priority

__all__ = [
    "IterationTimer",
    "LRScheduler",
    "PeriodicCheckpointer",
    "EvalHook",
    "BestCheckpointer",
    "PeriodicWriter",
]

logger = logging.getLogger(__name__)


class IterationTimer(HookBase):
    """Record each iteration's duration as ``"time"`` and log the total at the end.

    It runs first, so ``time`` covers the step plus the other hooks' ``before_step``, not their
    ``after_step`` (checkpointing, evaluation), which would distort the ETA.
    """

    priority = Priority.HIGHEST

    def __init__(self, warmup_iter: int = 3) -> None:
        """
        Args:
            warmup_iter: the first iterations, left out of the average in the final summary
                (they include one-off costs such as cudnn autotuning and loader start-up).
        """
        self._warmup_iter = warmup_iter
        self._step_start = 0.0
        self._train_start = 0.0
        self._timed_time = 0.0
        self._timed_iters = 0

    def before_train(self) -> None:
        self._train_start = time.perf_counter()

    def before_step(self) -> None:
        self._step_start = time.perf_counter()

    def after_step(self) -> None:
        seconds = time.perf_counter() - self._step_start
        if self.trainer.iter - self.trainer.start_iter >= self._warmup_iter:
            self._timed_time += seconds
            self._timed_iters += 1
        self.trainer.storage.put_scalar("time", seconds)

    def after_train(self) -> None:
        total = time.perf_counter() - self._train_start
        if self._timed_iters:
            per_iter = self._timed_time / self._timed_iters
            logger.info(
                f"Overall training speed: {self._timed_iters} iterations in "
                f"{self._timed_time:.1f} s ({per_iter:.4f} s / it)"
            )
        logger.info(f"Total training time: {total:.1f} s")


class LRScheduler(HookBase):
    """Record the learning rate of this iteration as ``"lr"``, then step the LR scheduler."""

    def __init__(self, scheduler: torch.optim.lr_scheduler.LRScheduler) -> None:
        """
        Args:
            scheduler: stepped once per iteration (e.g. :class:`rcnnzoo.solver.LRMultiplier`).
        """
        self.scheduler = scheduler
        self._group_index = 0

    def before_train(self) -> None:
        # Groups can differ in LR (custom configs); report the one holding the most parameters.
        groups = self.scheduler.optimizer.param_groups
        self._group_index = max(range(len(groups)), key=lambda i: len(groups[i]["params"]))

    def after_step(self) -> None:
        lr = self.scheduler.optimizer.param_groups[self._group_index]["lr"]
        self.trainer.storage.put_scalar("lr", lr, smoothing_hint=False)
        self.scheduler.step()


class PeriodicCheckpointer(HookBase):
    """Save ``model_{iter:07d}.pth`` every ``period`` iterations and ``model_final.pth`` at the end.

    The saved ``iteration`` is the one just finished; resuming starts at the next one. Register it
    on every process: with per-rank state (RNG, data loader position) saving is a collective call,
    and only the checkpointer with ``save_to_disk`` writes.
    """

    def __init__(
        self, checkpointer: Checkpointer, period: int, max_iter: int, max_to_keep: int | None = None
    ) -> None:
        """
        Args:
            checkpointer: saves the model and its registered checkpointables.
            period: iterations between checkpoints; 0 saves only the final one.
            max_iter: the iteration count at which ``model_final`` is written.
            max_to_keep: keep only the newest periodic checkpoints saved by this run (``None``: all).
                ``model_final`` and files from earlier runs are never deleted.
        """
        if max_to_keep is not None and max_to_keep < 1:
            raise ValueError(f"max_to_keep must be >= 1 or None, got {max_to_keep}")
        self.checkpointer = checkpointer
        self.period = period
        self.max_iter = max_iter
        self.max_to_keep = max_to_keep
        self._saved: list[str] = []

    def after_step(self) -> None:
        it = self.trainer.iter
        if it + 1 >= self.max_iter:
            self.checkpointer.save("model_final", iteration=it)
        elif self.every_n_iters(self.period):
            name = f"model_{it:07d}"
            self.checkpointer.save(name, iteration=it)
            if self.checkpointer.save_to_disk:  # other ranks may see rank 0's files: only the writer deletes
                self._saved.append(os.path.join(self.checkpointer.save_dir, f"{name}.pth"))
                self._delete_old()

    def _delete_old(self) -> None:
        if self.max_to_keep is None:
            return
        while len(self._saved) > self.max_to_keep:
            path = self._saved.pop(0)
            if os.path.exists(path):
                os.remove(path)


def _flatten(results: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"bbox": {"AP": 1}}`` -> ``{"bbox/AP": 1}``. Kept local so the engine does not import evaluation."""
    flat: dict[str, Any] = {}
    for key, value in results.items():
        name = f"{prefix}/{key}" if prefix else str(key)
        if isinstance(value, Mapping):
            flat.update(_flatten(value, name))
        else:
            flat[name] = value
    return flat


class EvalHook(HookBase):
    """Run ``eval_function`` every ``eval_period`` iterations and after the last one.

    Results (nested like ``{"bbox": {"AP": 0.501}}``) are flattened to ``"bbox/AP"`` and put into the
    storage without smoothing, so writers export them with the iteration they belong to.
    The global random streams are restored after the evaluation, so that evaluating (or not, or
    at another period) leaves the training's random numbers, and so its result, unchanged.
    """

    def __init__(self, eval_period: int, eval_function: Callable[[], Mapping[str, Any] | None]) -> None:
        """
        Args:
            eval_period: iterations between evaluations; 0 evaluates only after the last iteration.
            eval_function: runs the evaluation and returns (nested) results; may return ``None``
                or ``{}`` on processes other than the main one.
        """
        self._period = eval_period
        self._func = eval_function
        self.last_results: Mapping[str, Any] = {}  # the latest evaluation's (nested) results

    def after_step(self) -> None:
        if self.is_last_iter() or self.every_n_iters(self._period):
            self._do_eval()

    def _do_eval(self) -> None:
        model = self.trainer.model
        was_training = model.training
        try:
            with preserved_rng_state():
                results = self._func() or {}
        finally:
            model.train(was_training)  # an evaluation that forgets to restore train mode stays harmless
        if not isinstance(results, Mapping):
            raise TypeError(f"eval_function must return a dict of results, got {type(results).__name__}")
        self.last_results = results
        for name, value in _flatten(results).items():
            try:
                number = float(value)
            except (TypeError, ValueError) as e:
                raise ValueError(f"Evaluation result {name!r} = {value!r} is not a number") from e
            if math.isnan(number):
                logger.warning(f"Evaluation result {name} is NaN")
            self.trainer.storage.put_scalar(name, number, smoothing_hint=False)
        # Keep processes together: ranks that finished evaluating early would otherwise run ahead.
        synchronize()


_MODES = ("max", "min")


class BestCheckpointer(HookBase):
    """Keep ``<save_dir>/model_best.pth``: the model after the evaluation with the best ``metric``.

    It reads the metric the :class:`EvalHook` recorded in the storage this iteration (run it after
    that hook: its priority is ``LOW``) and, when the value beats the best so far, saves the model
    (no optimizer: the file is for evaluation and deployment, not a resume point; ``last_checkpoint``
    is left alone) atomically with the iteration, the metric's name and its value.

    On resume the best so far comes from the checkpoint (:meth:`state_dict`) and from the existing
    ``model_best.pth`` if that one is older than the resume point: the periodic checkpoint of an
    iteration is written before that iteration's evaluation, so its copy can miss the last result.
    Only the main process has evaluation results: register it there only.
    """

    priority = Priority.LOW

    def __init__(
        self, checkpointer: Checkpointer, metric: str, mode: str = "max", file_prefix: str = "model_best"
    ) -> None:
        """
        Args:
            checkpointer: writes the file (in its ``save_dir``).
            metric: the flattened result name, e.g. ``"bbox/AP"`` or ``"toy/MAE"``.
            mode: ``"max"`` (higher is better, AP) or ``"min"`` (lower is better, an error or a loss).
            file_prefix: the file name without ``.pth``.
        """
        if mode not in _MODES:
            raise ValueError(f"mode must be one of {_MODES}, got {mode!r}")
        self.checkpointer = checkpointer
        self.metric = metric
        self.mode = mode
        self.file_prefix = file_prefix
        self.best_value: float | None = None
        self.best_iter: int | None = None

    def _is_better(self, value: float) -> bool:
        if math.isnan(value):
            return False
        if self.best_value is None:
            return True
        return value > self.best_value if self.mode == "max" else value < self.best_value

    def after_step(self) -> None:
        latest = self.trainer.storage.latest().get(self.metric)
        if latest is None or latest[1] != self.trainer.iter:
            return  # no evaluation of this metric at this iteration
        value = float(latest[0])
        if not self._is_better(value):
            logger.info(
                f"{self.metric} = {value:.4f} is not better than {self.best_value} "
                f"(iteration {self.best_iter}); {self.file_prefix}.pth unchanged"
            )
            return
        previous = self.best_value
        self.best_value, self.best_iter = value, self.trainer.iter
        self.checkpointer.save(
            self.file_prefix,
            checkpointables=[],
            tag_last=False,
            iteration=self.trainer.iter,
            best_metric=self.metric,
            best_mode=self.mode,
            best_value=value,
        )
        logger.info(
            f"New best {self.metric} = {value:.4f} at iteration {self.trainer.iter} (was {previous}); "
            f"saved {self.file_prefix}.pth"
        )

    def before_train(self) -> None:
        if self.trainer.start_iter > 0:
            self._adopt_best_on_disk()

    def _adopt_best_on_disk(self) -> None:
        path = os.path.join(self.checkpointer.save_dir, f"{self.file_prefix}.pth")
        if not self.checkpointer.save_dir or not os.path.isfile(path):
            return
        try:  # mmap: the metadata is needed, not the weights
            data = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except Exception as e:
            logger.warning(f"Cannot read {path} ({e}); it will be replaced by the next best model")
            return
        it, value = data.get("iteration"), data.get("best_value")
        same = data.get("best_metric") == self.metric and data.get("best_mode", self.mode) == self.mode
        # A file from after the resume point belongs to iterations that will run again.
        if same and it is not None and value is not None and int(it) < self.trainer.start_iter:
            if self._is_better(float(value)):
                self.best_value, self.best_iter = float(value), int(it)

    def after_train(self) -> None:
        if self.best_iter is None:
            logger.warning(f"BestCheckpointer: no evaluation recorded {self.metric!r}; no best model saved")

    def state_dict(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "mode": self.mode,
            "best_value": self.best_value,
            "best_iter": self.best_iter,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("metric") != self.metric or state.get("mode") != self.mode:
            logger.info(
                f"BestCheckpointer: the checkpoint tracked {state.get('metric')} ({state.get('mode')}), "
                f"now {self.metric} ({self.mode}); starting a new best"
            )
            return
        self.best_value, self.best_iter = state["best_value"], state["best_iter"]


class PeriodicWriter(HookBase):
    """Call every writer's ``write()`` every ``period`` iterations and at the end; close them after training.

    It runs last so each write includes what other hooks recorded for the same iteration.
    """

    priority = Priority.LOWEST

    def __init__(self, writers: Iterable[EventWriter], period: int = 20) -> None:
        """
        Args:
            writers: e.g. ``[CommonMetricPrinter(max_iter), JSONWriter(path), TensorboardWriter(dir)]``.
            period: iterations between writes.
        """
        self.writers = list(writers)
        for w in self.writers:
            if not isinstance(w, EventWriter):
                raise TypeError(f"PeriodicWriter needs EventWriter instances, got {type(w).__name__}")
        self.period = period

    def after_step(self) -> None:
        if self.every_n_iters(self.period) or self.is_last_iter():
            for writer in self.writers:
                writer.write()

    def after_train(self) -> None:
        # Also writes what a failed run recorded since the last period.
        for writer in self.writers:
            writer.write()
            writer.close()
