"""The evaluator interface and the loop that runs a model over a dataset.

An evaluator sees the model's inputs and outputs batch by batch (:meth:`DatasetEvaluator.process`)
and turns what it collected into metrics at the end (:meth:`DatasetEvaluator.evaluate`).
:func:`inference_on_dataset` drives it: model in eval mode, no autograd, a progress bar and
timing logs.

Results are nested dicts ``{task: {metric: float}}``, e.g. ``{"bbox": {"AP": 0.41, "AP50": 0.63}}``;
:func:`flatten_results_dict` turns them into ``{"bbox/AP": 0.41, ...}`` for event writers.
"""

from __future__ import annotations

import datetime
import logging
import math
import time
from collections.abc import Iterable, Mapping
from contextlib import ExitStack, contextmanager
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from rcnnzoo.utils import comm
from rcnnzoo.utils.registry import Registry

__all__ = [
    "DatasetEvaluator",
    "DatasetEvaluators",
    "EVALUATOR_REGISTRY",
    "inference_context",
    "inference_on_dataset",
    "flatten_results_dict",
    "format_results_table",
    "print_csv_format",
]

logger = logging.getLogger(__name__)

EVALUATOR_REGISTRY = Registry("EVALUATOR")
EVALUATOR_REGISTRY.__doc__ = """
Evaluators, by name. Each is a :class:`DatasetEvaluator` subclass; the built-in ones take the
dataset name as their first argument, e.g. ``EVALUATOR_REGISTRY.get("COCOEvaluator")("coco_val")``.
"""


class DatasetEvaluator:
    """Base class: accumulate over a dataset's (input, output) pairs, then compute metrics.

    The calling order is ``reset()``, ``process(...)`` once per batch, ``evaluate()``.
    In distributed inference every process calls all three; ``evaluate`` gathers what the
    processes collected and returns the metrics on the main process (other processes may
    return ``{}`` or ``None``).
    """

    def reset(self) -> None:
        """Forget everything processed so far; called before an inference run."""

    def process(self, inputs: list[dict], outputs: list[dict]) -> None:
        """Record one batch.

        Args:
            inputs: the model's inputs, one dict per image (``image_id``, ``height``, ``width``,
                ``file_name``, ...).
            outputs: the model's outputs in the same order, e.g. ``{"instances": Instances}``.
        """

    def evaluate(self) -> dict[str, dict[str, float]] | None:
        """Metrics over everything processed: ``{task: {metric: value}}``."""
        return {}


class DatasetEvaluators(DatasetEvaluator):
    """Several evaluators run as one; their result dicts are merged (task names must differ)."""

    def __init__(self, evaluators: Iterable[DatasetEvaluator]):
        self._evaluators = list(evaluators)

    def reset(self) -> None:
        for evaluator in self._evaluators:
            evaluator.reset()

    def process(self, inputs: list[dict], outputs: list[dict]) -> None:
        for evaluator in self._evaluators:
            evaluator.process(inputs, outputs)

    def evaluate(self) -> dict[str, dict[str, float]]:
        results: dict[str, Any] = {}
        for evaluator in self._evaluators:
            result = evaluator.evaluate()
            if not (comm.is_main_process() and result):
                continue
            for task, metrics in result.items():
                if task in results:
                    raise KeyError(
                        f"Two evaluators both reported task {task!r} "
                        f"({type(evaluator).__name__} was the second); give them different task names"
                    )
                results[task] = metrics
        return results


@contextmanager
def inference_context(model: Any):
    """Put ``model`` in eval mode for the duration of the block, then restore its mode."""
    if not isinstance(model, nn.Module):
        yield
        return
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def _cuda_synchronize() -> None:
    # Kernels run asynchronously; without a sync the timer measures launch time only.
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def _safe_len(obj: Any) -> int | None:
    try:
        return len(obj)
    except TypeError:  # an iterable-style loader has no length
        return None


def inference_on_dataset(
    model: Any,
    data_loader: Iterable[list[dict]],
    evaluator: DatasetEvaluator | list[DatasetEvaluator] | None,
    *,
    progress: bool = True,
    num_warmup: int = 5,
) -> dict[str, dict[str, float]]:
    """Run ``model`` over every batch of ``data_loader`` and evaluate its outputs.

    The model runs in eval mode (its previous mode is restored afterwards) under
    ``torch.no_grad``. The first ``num_warmup`` iterations (fewer on short loaders) are left
    out of the per-image timings, since they include one-off costs (cuDNN autotuning,
    allocator growth, lazy imports).

    Args:
        model: a callable taking ``list[dict]`` and returning ``list[dict]`` (one per image).
        data_loader: yields batches, each a ``list[dict]`` of model inputs.
        evaluator: a :class:`DatasetEvaluator`, a list of them, or None (just run the model).
        progress: show a tqdm bar (only ever on the main process).
        num_warmup: iterations excluded from the timing statistics.

    Returns:
        ``evaluator.evaluate()`` on the main process, ``{}`` when it returns None (e.g. on other ranks).
    """
    if evaluator is None:
        evaluator = DatasetEvaluators([])
    elif isinstance(evaluator, (list, tuple)):
        evaluator = DatasetEvaluators(evaluator)
    total = _safe_len(data_loader)
    logger.info("Start inference on %s batches", total if total is not None else "an unknown number of")
    num_warmup = min(num_warmup, total - 1) if total else num_warmup

    evaluator.reset()
    num_images = 0  # images after warm-up
    compute_time = 0.0  # model time after warm-up
    start = time.perf_counter()
    timed_start = start
    with ExitStack() as stack:
        stack.enter_context(inference_context(model))
        stack.enter_context(torch.no_grad())
        bar = stack.enter_context(
            tqdm(total=total, desc="inference", disable=not (progress and comm.is_main_process()))
        )
        for idx, inputs in enumerate(data_loader):
            if idx == num_warmup:
                _cuda_synchronize()
                timed_start = time.perf_counter()
                num_images, compute_time = 0, 0.0
            tic = time.perf_counter()
            outputs = model(inputs)
            _cuda_synchronize()
            compute_time += time.perf_counter() - tic
            evaluator.process(inputs, outputs)
            num_images += len(inputs)
            bar.update(1)

    _log_timing(time.perf_counter() - start, time.perf_counter() - timed_start, compute_time, num_images)
    results = evaluator.evaluate()
    # An evaluator may return None on non-main processes; callers index the result directly.
    return results if results is not None else {}


def _log_timing(total_time: float, timed_time: float, compute_time: float, num_images: int) -> None:
    """Log wall time overall and, for the post-warm-up part, seconds per image."""
    world = comm.get_world_size()
    logger.info("Total inference time: %s", datetime.timedelta(seconds=int(total_time)))
    if num_images == 0:
        return
    logger.info(
        "Per image (after warm-up, %d images on this process of %d): %.4f s total, %.4f s in the model",
        num_images,
        world,
        timed_time / num_images,
        compute_time / num_images,
    )


def flatten_results_dict(results: Mapping[str, Any], sep: str = "/") -> dict[str, Any]:
    """Flatten nested dicts: ``{"bbox": {"AP": 0.5}}`` -> ``{"bbox/AP": 0.5}``."""
    flat: dict[str, Any] = {}
    for key, value in results.items():
        if isinstance(value, Mapping):
            for sub_key, sub_value in flatten_results_dict(value, sep).items():
                flat[f"{key}{sep}{sub_key}"] = sub_value
        else:
            flat[str(key)] = value
    return flat


def _format_value(value: Any) -> str:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.4f}"
    return str(value)


def format_results_table(
    metrics: Mapping[str, Any], columns: int = 1, headers: tuple[str, str] = ("metric", "value")
) -> str:
    """A plain-text table of ``name | value`` rows, ``columns`` pairs per row.

    Example::

        | metric | value  | metric | value  |
        |--------|--------|--------|--------|
        | AP     | 0.4130 | AP50   | 0.6310 |
    """
    cells = [(str(k), _format_value(v)) for k, v in metrics.items()]
    if not cells:
        return "(no metrics)"
    w_key = max(len(headers[0]), *(len(k) for k, _ in cells))
    w_val = max(len(headers[1]), *(len(v) for _, v in cells))
    columns = max(1, min(columns, len(cells)))

    def row(pairs: list[tuple[str, str]]) -> str:
        return "| " + " | ".join(f"{k:<{w_key}} | {v:<{w_val}}" for k, v in pairs) + " |"

    lines = [row([headers] * columns)]
    lines.append("|" + "|".join(["-" * (w_key + 2) + "|" + "-" * (w_val + 2)] * columns) + "|")
    for i in range(0, len(cells), columns):
        chunk = cells[i : i + columns]
        chunk += [("", "")] * (columns - len(chunk))
        lines.append(row(chunk))
    return "\n".join(lines)


def print_csv_format(results: Mapping[str, Mapping[str, Any]]) -> None:
    """Log each task's metrics as two copy-paste friendly CSV lines (names, then values).

    Per-category metrics (keys containing ``-``) are left out to keep the lines short.
    """
    for task, metrics in results.items():
        if not isinstance(metrics, Mapping):
            logger.info("copypaste: %s=%s", task, metrics)
            continue
        important = {k: v for k, v in metrics.items() if "-" not in k}
        logger.info("copypaste: Task: %s", task)
        logger.info("copypaste: %s", ",".join(important))
        logger.info("copypaste: %s", ",".join(_format_value(float(v)) for v in important.values()))
