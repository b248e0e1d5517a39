"""Training metrics: an :class:`EventStorage` that collects scalars, and writers that export them.

The trainer opens one ``EventStorage`` for the whole run and sets ``storage.iter`` before every
step. Anything that runs inside the loop (the trainer, hooks, a model that wants to log a
statistic) records scalars with ``get_event_storage().put_scalar(...)``. Writers read the storage
periodically and export what is new since their last write:

* :class:`JSONWriter` appends one JSON object per iteration to ``metrics.json``;
* :class:`CommonMetricPrinter` logs a one-line summary (ETA, losses, lr, timings, memory);
* :class:`TensorboardWriter` writes TensorBoard scalars.

Only the main process (rank 0) writes; writers built on other ranks are inert.
"""

from __future__ import annotations

import datetime
import json
import logging
import math
import os
import time
from collections import defaultdict
from typing import Any

import torch
from fvcore.common.history_buffer import HistoryBuffer

from rcnnzoo.utils.comm import is_main_process

__all__ = [
    "EventStorage",
    "get_event_storage",
    "EventWriter",
    "JSONWriter",
    "CommonMetricPrinter",
    "TensorboardWriter",
]

_STORAGE_STACK: list[EventStorage] = []


def get_event_storage() -> EventStorage:
    """Return the innermost :class:`EventStorage` that is currently open.

    Raises:
        RuntimeError: when called outside ``with EventStorage():`` (e.g. outside training).
    """
    if not _STORAGE_STACK:
        raise RuntimeError(
            "get_event_storage() was called outside an EventStorage context; "
            "wrap the code in `with EventStorage():` (the trainer does this during training)."
        )
    return _STORAGE_STACK[-1]


class EventStorage:
    """Scalar histories indexed by iteration, with a hint on how each should be smoothed.

    Use as a context manager so :func:`get_event_storage` finds it::

        with EventStorage(start_iter=0) as storage:
            storage.iter = 5
            storage.put_scalar("loss_cls", 0.7)
    """

    def __init__(self, start_iter: int = 0) -> None:
        """
        Args:
            start_iter: the iteration recorded with scalars until ``iter`` is changed.
        """
        self.iter = start_iter
        self._history: dict[str, HistoryBuffer] = defaultdict(HistoryBuffer)
        self._smoothing_hints: dict[str, bool] = {}
        self._latest: dict[str, tuple[float, int]] = {}
        self._images: list[tuple[str, Any, int]] = []

    def put_scalar(
        self, name: str, value: float | torch.Tensor, smoothing_hint: bool = True, cur_iter: int | None = None
    ) -> None:
        """Record ``value`` for ``name`` at ``cur_iter`` (default: the current ``iter``).

        Args:
            name: metric name, e.g. ``"loss_rpn_cls"`` or ``"bbox/AP"``.
            value: a number or a one-element tensor (a CUDA tensor costs a device sync).
            smoothing_hint: whether writers should report a windowed median (noisy values such as
                losses) rather than the latest value (lr, evaluation results).
            cur_iter: the iteration to record the value at.
        """
        value = float(value)
        it = self.iter if cur_iter is None else int(cur_iter)
        previous_hint = self._smoothing_hints.setdefault(name, smoothing_hint)
        if previous_hint != smoothing_hint:
            raise ValueError(
                f"Scalar {name!r} was recorded with smoothing_hint={previous_hint} before and "
                f"smoothing_hint={smoothing_hint} now; a scalar must keep one hint."
            )
        self._history[name].update(value, it)
        self._latest[name] = (value, it)

    def put_scalars(
        self, *, smoothing_hint: bool = True, cur_iter: int | None = None, **kwargs: float
    ) -> None:
        """Record several scalars at once: ``storage.put_scalars(loss_a=0.1, loss_b=0.2)``."""
        for name, value in kwargs.items():
            self.put_scalar(name, value, smoothing_hint=smoothing_hint, cur_iter=cur_iter)

    def put_image(self, name: str, image: Any) -> None:
        """Queue an image for writers that show images (TensorBoard).

        Args:
            image: ndarray/Tensor[H, W, 3] uint8 RGB.
        """
        self._images.append((name, image, self.iter))

    def pop_images(self) -> list[tuple[str, Any, int]]:
        """The queued ``(name, image, iteration)`` triples, emptying the queue."""
        images, self._images = self._images, []
        return images

    def history(self, name: str) -> HistoryBuffer:
        """The full history of scalar ``name`` (``.median(w)``, ``.avg(w)``, ``.latest()``, ``.values()``)."""
        if name not in self._history:
            raise KeyError(f"No scalar named {name!r} has been recorded; recorded: {sorted(self._history)}")
        return self._history[name]

    def histories(self) -> dict[str, HistoryBuffer]:
        """All scalar histories by name."""
        return dict(self._history)

    def latest(self) -> dict[str, tuple[float, int]]:
        """The last recorded value of every scalar: ``{name: (value, iteration)}``."""
        return dict(self._latest)

    def latest_with_smoothing_hint(self, window_size: int = 20) -> dict[str, tuple[float, int]]:
        """Like :meth:`latest`, but scalars put with ``smoothing_hint=True`` are reported as the
        median of their last ``window_size`` values."""
        result = {}
        for name, (value, it) in self._latest.items():
            if self._smoothing_hints[name]:
                value = self._history[name].median(window_size)
            result[name] = (value, it)
        return result

    def smoothing_hints(self) -> dict[str, bool]:
        """The smoothing hint of every recorded scalar."""
        return dict(self._smoothing_hints)

    def __enter__(self) -> EventStorage:
        _STORAGE_STACK.append(self)
        return self

    def __exit__(self, *exc: object) -> None:
        if not _STORAGE_STACK or _STORAGE_STACK[-1] is not self:
            raise RuntimeError("EventStorage contexts were exited out of order.")
        _STORAGE_STACK.pop()


class EventWriter:
    """Base class of writers: ``write()`` exports what is new in the current storage."""

    def write(self) -> None:
        """Export what the current :class:`EventStorage` recorded since the last write."""
        raise NotImplementedError

    def close(self) -> None:
        """Release files or handles; the default does nothing."""


class _NewScalars:
    """Tracks, per scalar, the last iteration exported, so each value is exported exactly once.

    Per scalar rather than one global mark: a value recorded late for an iteration that was
    already exported (another hook's order) still gets out, in a line of its own.
    """

    def __init__(self) -> None:
        self._last: dict[str, int] = {}

    def take(self, scalars: dict[str, tuple[float, int]]) -> dict[int, dict[str, float]]:
        """``{name: (value, iter)}`` -> ``{iter: {name: value}}`` of the values not exported yet."""
        grouped: dict[int, dict[str, float]] = defaultdict(dict)
        for name, (value, it) in scalars.items():
            if it > self._last.get(name, -1):
                grouped[it][name] = value
                self._last[name] = it
        return dict(sorted(grouped.items()))


def _json_number(value: float) -> float | None:
    # JSON has no NaN/Infinity; write null so every line stays parseable by strict readers.
    return value if math.isfinite(value) else None


class JSONWriter(EventWriter):
    """Append one JSON object per iteration to a file (conventionally ``<output_dir>/metrics.json``).

    Each line is ``{"iteration": i, "<scalar>": value, ...}``: losses (smoothed over ``window_size``),
    ``lr``, ``time``, ``data_time``, evaluation results such as ``"bbox/AP"``. Non-finite values are
    written as ``null``. A value recorded for an iteration after that iteration was written (e.g. by
    a hook running after the writer) gets a line of its own. Read the file with ``[json.loads(line) for line in open(path)]``.
    """

    def __init__(self, json_file: str, window_size: int = 20) -> None:
        """
        Args:
            json_file: path of the file to append to; its directory is created if needed.
            window_size: window of the median used for scalars put with ``smoothing_hint=True``.
        """
        self._window_size = window_size
        self._new = _NewScalars()
        self._file = None
        if is_main_process():
            os.makedirs(os.path.dirname(os.path.abspath(json_file)), exist_ok=True)
            self._file = open(json_file, "a", encoding="utf-8")  # closed in close()

    def write(self) -> None:
        if self._file is None:
            return
        scalars = get_event_storage().latest_with_smoothing_hint(self._window_size)
        for it, values in self._new.take(scalars).items():
            record = {"iteration": it, **{k: _json_number(v) for k, v in values.items()}}
            self._file.write(json.dumps(record, sort_keys=True, allow_nan=False) + "\n")
        self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


class TensorboardWriter(EventWriter):
    """Write every new scalar, and queued images, to TensorBoard via ``SummaryWriter``."""

    def __init__(self, log_dir: str, window_size: int = 20, **kwargs: Any) -> None:
        """
        Args:
            log_dir: directory of the event files.
            window_size: window of the median used for smoothed scalars.
            kwargs: passed to ``SummaryWriter``.
        """
        self._window_size = window_size
        self._new = _NewScalars()
        self._writer = None
        if is_main_process():
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(log_dir, **kwargs)

    def write(self) -> None:
        if self._writer is None:
            return
        scalars = get_event_storage().latest_with_smoothing_hint(self._window_size)
        for it, values in self._new.take(scalars).items():
            for name, value in values.items():
                self._writer.add_scalar(name, value, it)
        for name, image, it in get_event_storage().pop_images():
            self._writer.add_image(name, image, it, dataformats="HWC")
        self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


class CommonMetricPrinter(EventWriter):
    """Log one line per write: ETA, iteration, losses, ``lr``, ``time``, ``data_time``, max memory.

    The ETA is the median iteration time (the ``"time"`` scalar put by the ``IterationTimer`` hook)
    times the iterations left; without it the printer falls back to wall-clock time between writes.
    """

    def __init__(self, max_iter: int, window_size: int = 20) -> None:
        """
        Args:
            max_iter: total iterations of the run, used for the ETA.
            window_size: window of the medians reported for losses and timings.
        """
        self.logger = logging.getLogger(__name__)
        self._max_iter = max_iter
        self._window_size = window_size
        self._last_wall: tuple[int, float] | None = None  # (iteration, time.perf_counter())
        self._last_printed = -1
        self._enabled = is_main_process()

    def write(self) -> None:
        storage = get_event_storage() if self._enabled else None
        # A final write right after the periodic one would print the same line twice; a run that
        # trained nothing (resumed at max_iter) has nothing to print.
        if storage is None or storage.iter == self._last_printed or not storage.latest():
            return
        self._last_printed = storage.iter
        parts = [f"iter: {storage.iter}/{self._max_iter}"]
        eta = self._eta_seconds(storage)
        if eta is not None:
            parts.insert(0, f"eta: {datetime.timedelta(seconds=int(eta))}")
        parts += self._loss_fields(storage)
        parts += self._timing_fields(storage)
        if torch.cuda.is_available():
            parts.append(f"max_mem: {torch.cuda.max_memory_allocated() / 1024**2:.0f}M")
        self.logger.info("  ".join(parts))

    def _eta_seconds(self, storage: EventStorage) -> float | None:
        remaining = self._max_iter - storage.iter - 1
        now = time.perf_counter()
        if "time" in storage.histories():
            return storage.history("time").median(self._window_size) * remaining
        eta = None
        if self._last_wall is not None and storage.iter > self._last_wall[0]:
            per_iter = (now - self._last_wall[1]) / (storage.iter - self._last_wall[0])
            eta = per_iter * remaining
        self._last_wall = (storage.iter, now)
        return eta

    def _loss_fields(self, storage: EventStorage) -> list[str]:
        latest = storage.latest()
        names = sorted(n for n in latest if "loss" in n and latest[n][1] == storage.iter)
        # total_loss first: it is what a reader scans for.
        names.sort(key=lambda n: n != "total_loss")
        return [f"{n}: {storage.history(n).median(self._window_size):.4g}" for n in names]

    def _timing_fields(self, storage: EventStorage) -> list[str]:
        histories = storage.histories()
        fields = []
        if "time" in histories:
            fields.append(f"time: {histories['time'].median(self._window_size):.4f}")
            fields.append(f"last_time: {histories['time'].latest():.4f}")
        if "data_time" in histories:
            fields.append(f"data_time: {histories['data_time'].median(self._window_size):.4f}")
        if "lr" in histories:
            fields.append(f"lr: {histories['lr'].latest():.5g}")
        return fields
