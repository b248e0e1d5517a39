"""Training and evaluation from a lazy config, for ``tools/train_net.py``.

    model = instantiate(cfg.model).to(resolve_device(cfg.train.device))
    if args.eval_only:
        Checkpointer(model).load(cfg.train.init_checkpoint)
        print(do_test(cfg, model))
    else:
        do_train(cfg, model, resume=args.resume)

:func:`do_train` builds everything else from the config: the optimizer (filling
``cfg.optimizer.params.model``), the training loader, the LR schedule, the checkpointer, the
hooks and the metric writers (console, ``metrics.json``, TensorBoard).
"""

from __future__ import annotations

import logging
import os
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from rcnnzoo.checkpoint import (
    Checkpointer,
    ClassMetadata,
    PerRankState,
    RNGState,
    class_dependent_prefixes,
    class_metadata_of,
)
from rcnnzoo.solver import LRMultiplier, grad_clipper_from_config
from rcnnzoo.utils.comm import get_world_size, is_main_process
from rcnnzoo.utils.events import CommonMetricPrinter, EventWriter, JSONWriter, TensorboardWriter

from . import hooks
from .defaults import cfg_get, resolve_device
from .freeze import freeze_parameters
from .train_loop import AMPTrainer, HookBase, SimpleTrainer

__all__ = ["do_train", "do_test", "has_test_data", "build_optimizer", "default_writers", "create_ddp_model"]

logger = logging.getLogger(__name__)


def build_optimizer(cfg: Any, model: nn.Module) -> torch.optim.Optimizer:
    """``instantiate(cfg.optimizer)`` after pointing ``cfg.optimizer.params.model`` at ``model``.

    The params node (``L(get_default_optimizer_params)(...)``) cannot name the model when the config
    is written; this fills it in.
    """
    from rcnnzoo.config import instantiate

    params = cfg_get(cfg, "optimizer.params", None)
    if params is not None and "_target_" in params:
        params.model = model
    return instantiate(cfg.optimizer)


def create_ddp_model(model: nn.Module) -> nn.Module:
    """Wrap ``model`` in ``DistributedDataParallel`` when running in several processes."""
    if get_world_size() <= 1:
        return model
    device_ids = [torch.cuda.current_device()] if next(model.parameters()).is_cuda else None
    return DistributedDataParallel(model, device_ids=device_ids)


def default_writers(output_dir: str, max_iter: int) -> list[EventWriter]:
    """Console line, ``<output_dir>/metrics.json`` and TensorBoard events in ``output_dir``."""
    return [
        CommonMetricPrinter(max_iter),
        JSONWriter(os.path.join(output_dir, "metrics.json")),
        TensorboardWriter(output_dir),
    ]


def _freeze(cfg: Any, model: nn.Module) -> None:
    """Apply ``train.freeze`` (see :mod:`rcnnzoo.engine.freeze`) and log what trains."""
    patterns = cfg_get(cfg, "train.freeze", None) or []
    report = freeze_parameters(model, [str(p) for p in patterns])
    logger.info(report.summary())


def _build_trainer(cfg: Any, model: nn.Module, optimizer: torch.optim.Optimizer) -> SimpleTrainer:
    from rcnnzoo.config import instantiate

    data_loader = instantiate(cfg.dataloader.train)
    ddp_model = create_ddp_model(model)
    clipper = grad_clipper_from_config(cfg_get(cfg, "train.clip_grad", None))
    if cfg_get(cfg, "train.amp.enabled", False):
        dtype = cfg_get(cfg, "train.amp.dtype", "float16")
        return AMPTrainer(ddp_model, data_loader, optimizer, precision=dtype, grad_clipper=clipper)
    return SimpleTrainer(ddp_model, data_loader, optimizer, grad_clipper=clipper)


def _build_checkpointer(
    cfg: Any, model: nn.Module, trainer: SimpleTrainer, scheduler: LRMultiplier
) -> Checkpointer:
    """Model, optimizer, scheduler, GradScaler (fp16), the training data's classes and, per process,
    the RNG and the data position."""
    extra: dict[str, Any] = {"rng": PerRankState(RNGState())}
    # The classes travel with the weights (called after the loader was built: loading the data
    # fills its metadata).
    names = cfg_get(cfg, "dataloader.train.dataset.names", None)
    metadata = class_metadata_of(names) if names else None
    if metadata is not None:
        extra["metadata"] = ClassMetadata(metadata)
    scaler = getattr(trainer, "grad_scaler", None)  # fp16 AMP: its scale is part of the state
    if scaler is not None:
        extra["grad_scaler"] = scaler
    loader = trainer.data_loader
    if hasattr(loader, "state_dict") and hasattr(loader, "load_state_dict"):
        extra["data_loader"] = PerRankState(loader)
    else:
        logger.info(
            f"The training loader ({type(loader).__name__}) has no state_dict(): --resume restarts its "
            "stream; build it with build_detection_train_loader for an exact resume."
        )
    return Checkpointer(
        model,
        cfg_get(cfg, "train.output_dir"),
        optimizer=trainer.optimizer,
        scheduler=scheduler,
        save_to_disk=is_main_process(),
        **extra,
    )


def _best_checkpointer(cfg: Any, checkpointer: Checkpointer) -> hooks.BestCheckpointer | None:
    """``train.best_checkpoint = dict(metric="bbox/AP", mode="max")`` -> the hook (main process only)."""
    best = cfg_get(cfg, "train.best_checkpoint", None)
    if not best or not best.get("metric"):
        return None
    if not has_test_data(cfg):
        logger.warning("train.best_checkpoint is set but the config has no test data; no best model is kept")
        return None
    if not is_main_process():
        return None
    hook = hooks.BestCheckpointer(checkpointer, best["metric"], best.get("mode", "max"))
    checkpointer.checkpointables["best_checkpointer"] = hook  # the best value survives a resume
    return hook


def _evaluate_and_draw(cfg: Any, model: nn.Module) -> dict[str, Any]:
    """:func:`do_test`, then (rank 0) a few evaluation images drawn to ``<output_dir>/predictions``
    and to TensorBoard, so each evaluation can also be looked at."""
    results = do_test(cfg, model)
    output_dir = cfg_get(cfg, "train.output_dir", None)
    drawable = all(cfg_get(cfg, f"dataloader.test.{k}", None) is not None for k in ("dataset", "mapper"))
    if is_main_process() and output_dir and drawable:
        from .draw import draw_predictions

        try:
            draw_predictions(cfg, model, output_dir, to_event_storage=True)
        except Exception as e:  # pictures are a convenience; they never stop a training run
            logger.warning(f"Could not draw evaluation images: {type(e).__name__}: {e}")
    return results


def has_test_data(cfg: Any) -> bool:
    """Whether ``cfg`` has both ``dataloader.test`` and ``dataloader.evaluator`` to evaluate with."""
    return (
        cfg_get(cfg, "dataloader.test", None) is not None
        and cfg_get(cfg, "dataloader.evaluator", None) is not None
    )


def _build_hooks(
    cfg: Any, model: nn.Module, scheduler: LRMultiplier, checkpointer: Checkpointer, max_iter: int
) -> list[HookBase | None]:
    output_dir = cfg_get(cfg, "train.output_dir")
    main = is_main_process()
    return [
        hooks.IterationTimer(),
        hooks.LRScheduler(scheduler),
        # On every rank: saving gathers each rank's RNG and data position; only rank 0 writes.
        hooks.PeriodicCheckpointer(
            checkpointer,
            cfg_get(cfg, "train.checkpointer.period", 5000),
            max_iter,
            max_to_keep=cfg_get(cfg, "train.checkpointer.max_to_keep", None),
        ),
        # Every rank evaluates (inference is distributed); only rank 0 gets results to record.
        hooks.EvalHook(cfg_get(cfg, "train.eval_period", 0), lambda: _evaluate_and_draw(cfg, model))
        if has_test_data(cfg)
        else None,
        _best_checkpointer(cfg, checkpointer),
        hooks.PeriodicWriter(
            default_writers(output_dir, max_iter), period=cfg_get(cfg, "train.log_period", 20)
        )
        if main
        else None,
    ]


def do_train(cfg: Any, model: nn.Module, *, resume: bool = False) -> dict[str, Any]:
    """Train ``model`` as ``cfg`` says, checkpointing and evaluating on the way.

    Args:
        cfg: lazy config with ``optimizer``, ``lr_multiplier``, ``dataloader.train`` (and
            ``dataloader.test``/``evaluator`` when ``train.eval_period`` > 0 or at the end) and ``train``.
        model: the (unwrapped) model; it is moved to ``cfg.train.device``.
        resume: continue from ``<output_dir>/last_checkpoint`` if it exists (model, optimizer,
            scheduler, GradScaler, iteration, and each process's RNG states and data loader position,
            so that the run continues exactly as an uninterrupted one would); otherwise start at
            iteration 0 from ``cfg.train.init_checkpoint`` (weights only; when its class count
            differs, the class-dependent predictor layers keep their fresh initialization).

    Optional ``train`` keys (absent: off): ``clip_grad = dict(type="norm" | "value", value=...,
    norm_type=2.0)``, ``best_checkpoint = dict(metric="bbox/AP", mode="max" | "min")``,
    ``freeze = ["backbone", ...]`` (parameters that do not train, by module path or pattern; see
    :mod:`rcnnzoo.engine.freeze`), ``stages = [dict(name=..., ...), ...]`` (train in stages, e.g.
    Faster R-CNN's alternating training: :func:`rcnnzoo.engine.stages.train_in_stages`, to which
    this function then hands the whole run).

    Returns:
        The results of the last evaluation (the one after the last iteration), nested like
        ``{"bbox": {"AP": 0.501, ...}}``; ``{}`` on non-main ranks or when nothing was trained.
    """
    from rcnnzoo.config import instantiate

    if cfg_get(cfg, "train.stages", None):
        from .stages import train_in_stages

        return train_in_stages(cfg, model, resume=resume)
    model.to(resolve_device(cfg_get(cfg, "train.device", None))).train()
    _freeze(cfg, model)  # before the optimizer is built: frozen parameters are not given to it
    max_iter = int(cfg_get(cfg, "train.max_iter"))
    optimizer = build_optimizer(cfg, model)
    trainer = _build_trainer(cfg, model, optimizer)
    scheduler = LRMultiplier(optimizer, instantiate(cfg.lr_multiplier), max_iter)
    checkpointer = _build_checkpointer(cfg, model, trainer, scheduler)
    train_hooks = _build_hooks(cfg, model, scheduler, checkpointer, max_iter)
    trainer.register_hooks(train_hooks)
    # Decided before loading: an init_checkpoint from an earlier run also stores an iteration,
    # which must not move the start of a fresh run.
    resuming = resume and checkpointer.has_checkpoint()
    # A fresh run may start from weights trained on another number of classes (a fine-tune): the
    # class-dependent layers are then re-initialised; any other difference is an error.
    report = checkpointer.resume_or_load(
        cfg_get(cfg, "train.init_checkpoint", ""),
        resume=resume,
        allow_shape_mismatch=class_dependent_prefixes(model),
    )
    start_iter = report.iteration + 1 if resuming and report.iteration is not None else 0
    not_restored = [k for k in ("rng", "data_loader") if k in checkpointer.checkpointables]
    not_restored = [k for k in not_restored if k not in report.loaded_checkpointables]
    if resuming and not_restored:
        logger.warning(f"{report.path} has no {not_restored} state: the resumed run will not repeat exactly")
    if start_iter >= max_iter:
        logger.info(f"Nothing to train: resumed at iteration {start_iter} with train.max_iter={max_iter}")
    trainer.train(start_iter, max_iter)
    eval_hooks = [h for h in train_hooks if isinstance(h, hooks.EvalHook)]
    return dict(eval_hooks[0].last_results) if eval_hooks else {}


def _build_evaluator(cfg: Any) -> Any:
    """``instantiate(cfg.dataloader.evaluator)`` with ``output_dir`` defaulting to ``cfg.train.output_dir``.

    Filled only where the evaluator takes an ``output_dir`` argument (PASCAL VOC's does not) and the
    config leaves it unset or ``None``; the config itself is not modified.
    """
    from rcnnzoo.config import build_part, instantiate

    evaluator_cfg = cfg.dataloader.evaluator
    output_dir = cfg_get(cfg, "train.output_dir", None)
    if "output_dir" not in evaluator_cfg:
        return build_part(evaluator_cfg, output_dir=output_dir)  # passed only if the target accepts it
    if evaluator_cfg.output_dir is None:
        return instantiate(evaluator_cfg, output_dir=output_dir)
    return instantiate(evaluator_cfg)


def do_test(cfg: Any, model: nn.Module) -> dict[str, Any]:
    """Evaluate ``model`` on ``cfg.dataloader.test`` with ``cfg.dataloader.evaluator``.

    The model is used where it is (it is not moved). ``inference_on_dataset`` runs it in eval mode
    without autograd, restores its mode and logs the results table. The evaluator's ``output_dir``
    defaults to ``cfg.train.output_dir``.

    Returns:
        The evaluator's results, nested like ``{"bbox": {"AP": 0.501, ...}}`` (``{}`` on non-main ranks).
    """
    from rcnnzoo.config import instantiate
    from rcnnzoo.evaluation import inference_on_dataset

    data_loader = instantiate(cfg.dataloader.test)
    return inference_on_dataset(model, data_loader, _build_evaluator(cfg)) or {}
