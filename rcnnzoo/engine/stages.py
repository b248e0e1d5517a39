"""Training in stages from one config: Faster R-CNN's 4-step alternating training (Ren et al. 2015, §3.2),
R-CNN's fine-tuning, SVMs and box regressors (Girshick et al. 2014; :mod:`rcnnzoo.engine.rcnn_stages`).

A config with ``train.stages`` trains its stages one after the other; :func:`do_train
<rcnnzoo.engine.do_train>` hands such a config to :func:`train_in_stages`::

    train.stages = [
        dict(name="1_rpn", share=0.2, train_mode="rpn"),
        dict(name="2_fast_rcnn", share=0.4, train_mode="detector",
             init_from="init_checkpoint", proposals_from="1_rpn"),
        dict(name="3_rpn_shared", share=0.2, train_mode="rpn", freeze=["backbone"]),
        dict(name="4_fast_rcnn_shared", share=0.2, train_mode="detector", freeze=["backbone"]),
    ]

Each stage is a training run of its own (``do_train`` on a copy of the config) in
``<train.output_dir>/<name>/``, with its own iterations, LR schedule (``lr_multiplier`` is a function
of the stage's progress, so the config's schedule stretches to each stage), checkpoints,
``metrics.json`` and TensorBoard events. It starts from weights only (no optimizer state) and, when
``train.seed >= 0``, from its own seed, so a stage's run does not depend on how the process got to it.

Stage keys:

* ``name`` (required): the stage's folder name, unique.
* ``share`` or ``max_iter`` (one of them, except in a ``run`` stage): the stage's iterations, as a
  share of ``train.max_iter`` (the shares are rounded so that they add up exactly) or as a number.
* ``run``: a stage that does not train by SGD: a ``LazyCall`` node of an object called as
  ``step(cfg, model) -> dict`` with the stage's config and its model (built and initialised as
  for any stage), which it changes in place (e.g. R-CNN's SVMs fitted on cached features:
  :class:`~rcnnzoo.engine.rcnn_stages.TrainSVMs`). The runner then saves the model as the stage's
  ``model_final.pth`` and evaluates it if the stage evaluates. It takes no ``share``/``max_iter``.
* ``replace``: ``{dotted key: value}`` set in the stage's config before its ``overrides``; unlike
  those, a value may be a config node, e.g. ``{"model.box_predictor": L(FastRCNNOutputLayers)()}``
  fine-tunes with a softmax a model whose final predictor is SVMs. Weights pass between stages by
  name: those the next stage's model lacks are dropped and those it adds keep their
  initialization (both are logged).
* ``train_mode``: the model's ``train_mode``: ``"joint"`` (default), ``"rpn"`` (only the RPN's
  losses; the RoI heads do not run and are frozen) or ``"detector"`` (only the RoI heads' losses;
  the proposal generator only proposes and is frozen).
* ``freeze``: more freeze patterns (:mod:`rcnnzoo.engine.freeze`), added to ``train.freeze``.
* ``init_from``: the initial weights: ``"init_checkpoint"`` (the config's ``train.init_checkpoint``;
  the default of the first stage), ``"previous"`` (the previous stage's ``model_final.pth``; the
  default of the others), an earlier stage's name, or a checkpoint path.
* ``proposals_from``: an earlier stage's name. Its backbone, as a frozen copy outside the model,
  computes the features the model's proposal generator reads, and its proposal generator's
  weights are loaded into the model's (frozen): the model trains on that stage's proposals,
  computed on the fly (step 2). The copy is not part of the model: checkpoints hold the model's
  own weights only, the RPN of that stage included.
* ``lr_multiplier``: this stage's LR schedule (a ``LazyCall`` node); default the config's.
* ``overrides``: ``["key=value", ...]`` applied to the stage's config, as on the command line
  (e.g. ``"dataloader.train.total_batch_size=2"``, ``"optimizer.lr=0.001"``).
* ``evaluate``: evaluate during and after this stage (default: only the last stage does).

The last stage's ``model_final.pth`` is copied to ``<train.output_dir>/model_final.pth``: one model,
loaded and evaluated like any other. ``<train.output_dir>/stages.json`` lists the stages completed
(written atomically after each). ``--resume`` skips those (a stage counts as complete when it is
listed there and its ``model_final.pth`` exists), resumes the first incomplete stage from its own
``last_checkpoint`` (exactly, as ``do_train`` resumes) and runs the rest from their starts.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from rcnnzoo.checkpoint import Checkpointer, atomic_write, class_dependent_prefixes
from rcnnzoo.utils.comm import all_gather, get_rank, is_main_process, synchronize
from rcnnzoo.utils.registry import did_you_mean

from .defaults import cfg_get, resolve_device, seed_all_rng

__all__ = [
    "Stage",
    "FrozenFeatures",
    "attach_proposal_network",
    "parse_stages",
    "read_completed",
    "stage_config",
    "stage_iterations",
    "train_in_stages",
]

logger = logging.getLogger(__name__)

STATE_FILE = "stages.json"
_FINAL = "model_final.pth"
_KEYS = (
    "name",
    "share",
    "max_iter",
    "train_mode",
    "freeze",
    "init_from",
    "proposals_from",
    "lr_multiplier",
    "overrides",
    "evaluate",
    "run",
    "replace",
)
# The part that gets no loss in each mode, frozen so that the log and the optimizer say so.
_FROZEN_BY_MODE = {"joint": [], "rpn": ["roi_heads"], "detector": ["proposal_generator"]}
# Spaced so that no two (stage, process) pairs share a seed, with up to 1000 processes.
_SEED_STRIDE = 1000


@dataclass
class Stage:
    """One stage of a ``train.stages`` schedule (see the module docstring for the keys)."""

    name: str
    max_iter: int
    train_mode: str = "joint"
    freeze: list[str] = field(default_factory=list)
    init_from: str = "previous"
    proposals_from: str | None = None
    lr_multiplier: Any = None
    overrides: list[str] = field(default_factory=list)
    evaluate: bool = False
    run: Any = None
    replace: dict[str, Any] = field(default_factory=dict)


def _plain(value: Any) -> Any:
    """A config value (``ListConfig`` ...) as plain Python."""
    from omegaconf import DictConfig, ListConfig, OmegaConf

    if isinstance(value, (DictConfig, ListConfig)):
        return OmegaConf.to_container(value, resolve=True)
    return value


def stage_iterations(specs: Sequence[Any], total: int) -> list[int]:
    """Each stage's iterations: its ``max_iter``, or its ``share`` of ``total``; 0 for a ``run`` stage.

    Shares are rounded on their running sum, so shares that add up to 1 give exactly ``total``
    iterations (0.2/0.4/0.2/0.2 of 32 -> 6, 13, 7, 6).
    """
    iters, cumulative, done = [], 0.0, 0
    for i, spec in enumerate(specs):
        share, fixed = spec.get("share"), spec.get("max_iter")
        if spec.get("run") is not None:
            if share is not None or fixed is not None:
                raise ValueError(f"train.stages[{i}] is a 'run' stage: it takes no 'share' or 'max_iter'")
            iters.append(0)
            continue
        if (share is None) == (fixed is None):
            raise ValueError(
                f"train.stages[{i}] needs exactly one of 'share' or 'max_iter', got {dict(spec)}"
            )
        if fixed is not None:
            iters.append(int(fixed))
            continue
        if not 0 < float(share) <= 1:
            raise ValueError(f"train.stages[{i}].share must be in (0, 1], got {share}")
        cumulative += float(share)
        end = round(cumulative * total)
        iters.append(end - done)
        done = end
    bad = [i for i, (n, spec) in enumerate(zip(iters, specs)) if n < 1 and spec.get("run") is None]
    if bad:
        raise ValueError(f"train.stages{bad} get fewer than 1 iteration ({iters} of train.max_iter={total})")
    return iters


def parse_stages(cfg: Any) -> list[Stage]:
    """Validate ``cfg.train.stages`` and resolve its defaults.

    Raises:
        ValueError: an unknown key (with close matches), a missing or repeated name, a name that
            is not a plain folder name, a reference to a stage that does not come earlier, an
            unknown ``train_mode``.
    """
    specs = list(cfg_get(cfg, "train.stages"))
    if not specs:
        raise ValueError("train.stages is empty")
    iters = stage_iterations(specs, int(cfg_get(cfg, "train.max_iter", 0) or 0))
    stages: list[Stage] = []
    for i, (spec, n) in enumerate(zip(specs, iters)):
        unknown = [k for k in spec if k not in _KEYS]
        if unknown:
            hints = "".join(did_you_mean(str(k), _KEYS) for k in unknown)
            raise ValueError(
                f"train.stages[{i}] has unknown keys {unknown}.{hints} Valid keys: {', '.join(_KEYS)}"
            )
        name = spec.get("name")
        if not name or not isinstance(name, str) or name in (".", "..") or "/" in name or os.sep in name:
            raise ValueError(f"train.stages[{i}].name must be a folder name, got {name!r}")
        earlier = [s.name for s in stages]
        if name in earlier:
            raise ValueError(f"train.stages[{i}]: the name {name!r} is used twice")
        mode = spec.get("train_mode", "joint")
        if mode not in _FROZEN_BY_MODE:
            raise ValueError(
                f"train.stages[{i}].train_mode must be one of {list(_FROZEN_BY_MODE)}, got {mode!r}"
            )
        init_from = spec.get("init_from", "init_checkpoint" if i == 0 else "previous")
        _check_init_from(i, init_from, earlier, [str(s.get("name")) for s in specs])
        proposals_from = spec.get("proposals_from")
        if proposals_from is not None and proposals_from not in earlier:
            raise ValueError(
                f"train.stages[{i}].proposals_from={proposals_from!r} must name an earlier stage: {earlier}"
            )
        stages.append(
            Stage(
                name=name,
                max_iter=n,
                train_mode=mode,
                freeze=list(_plain(spec.get("freeze")) or []),
                init_from=init_from,
                proposals_from=proposals_from,
                lr_multiplier=spec.get("lr_multiplier"),
                overrides=list(_plain(spec.get("overrides")) or []),
                evaluate=bool(spec.get("evaluate", i == len(specs) - 1)),
                run=spec.get("run"),
                replace=_replacements(cfg, i, spec.get("replace")),
            )
        )
    return stages


def _replacements(cfg: Any, index: int, replace: Any) -> dict[str, Any]:
    """A stage's ``replace``, checked now against the config (each key must exist)."""
    from omegaconf import DictConfig

    from rcnnzoo.config.lazy_config import _set_dotted

    if replace is None:
        return {}
    if not isinstance(replace, (dict, DictConfig)):
        raise ValueError(
            f"train.stages[{index}].replace must map dotted config keys to values, got {replace!r}"
        )
    trial = copy.deepcopy(cfg)
    for key, value in replace.items():
        try:
            _set_dotted(trial, str(key), copy.deepcopy(value), add=False)
        except KeyError as e:
            raise ValueError(f"train.stages[{index}].replace: {e.args[0]}") from e
    return {str(k): v for k, v in replace.items()}


def _check_init_from(index: int, init_from: str, earlier: list[str], names: list[str]) -> None:
    """Refuse now, not after hours of earlier stages, a start that cannot exist when the stage begins."""
    where = f"train.stages[{index}].init_from={init_from!r}"
    if init_from == "previous" and index == 0:
        raise ValueError(f"{where}: the first stage has no previous stage")
    if init_from in ("init_checkpoint", "previous") or init_from in earlier:
        return
    if init_from in names:
        raise ValueError(f"{where} names a stage that does not come earlier; earlier stages: {earlier}")
    if "://" not in init_from and not os.path.isfile(init_from):
        raise ValueError(
            f"{where} is neither 'init_checkpoint', 'previous', an earlier stage ({earlier}) nor an existing file"
        )


def stage_config(cfg: Any, stage: Stage) -> Any:
    """The config one stage trains with: a copy of ``cfg`` without ``train.stages``, in
    ``<output_dir>/<name>``, with the stage's replacements, iterations, freeze patterns,
    ``model.train_mode``, schedule and overrides, no ``init_checkpoint`` (:func:`train_in_stages`
    loads the initial weights), and without evaluation unless the stage evaluates."""
    from rcnnzoo.config import LazyConfig
    from rcnnzoo.config.lazy_config import _set_dotted

    scfg = copy.deepcopy(cfg)
    scfg.train.pop("stages")
    for key, value in stage.replace.items():
        _set_dotted(scfg, key, copy.deepcopy(value), add=False)
    scfg.train.output_dir = os.path.join(cfg_get(cfg, "train.output_dir"), stage.name)
    scfg.train.max_iter = stage.max_iter
    scfg.train.init_checkpoint = ""
    implied = _FROZEN_BY_MODE[stage.train_mode] + (["proposal_generator"] if stage.proposals_from else [])
    patterns = list(_plain(cfg_get(cfg, "train.freeze", None)) or []) + implied + stage.freeze
    scfg.train.freeze = list(dict.fromkeys(patterns))  # in order, once each
    if stage.train_mode != "joint" or "train_mode" in scfg.model:
        scfg.model.train_mode = stage.train_mode
    if stage.lr_multiplier is not None:
        scfg.lr_multiplier = copy.deepcopy(stage.lr_multiplier)
    if not stage.evaluate:
        if cfg_get(scfg, "dataloader.evaluator", None) is not None:
            scfg.dataloader.evaluator = None  # has_test_data() is then False: no EvalHook
        if cfg_get(scfg, "train.best_checkpoint", None) is not None:
            scfg.train.best_checkpoint = None
    return LazyConfig.apply_overrides(scfg, stage.overrides)


class FrozenFeatures:
    """A frozen backbone as a plain callable, for ``GeneralizedRCNN.proposal_features``.

    It is deliberately not an ``nn.Module`` attribute of the model: it is no part of the model's
    state dict, of its ``train()``/``eval()``, of its optimizer or of DDP's parameters.
    """

    def __init__(self, backbone: nn.Module) -> None:
        """
        Args:
            backbone: the trained backbone; its parameters get ``requires_grad=False`` and it
                stays in eval mode (BatchNorm uses its stored statistics).
        """
        self.backbone = backbone.eval().requires_grad_(False)

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """
        Args:
            images: the normalized, padded batch, Tensor[N, 3, H, W].
        Returns:
            the backbone's features, name -> Tensor[N, C, Hi, Wi].
        """
        return self.backbone(images)


def _under(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The entries of ``state`` under the module path ``prefix``, with the prefix removed."""
    return {k[len(prefix) + 1 :]: v for k, v in state.items() if k.startswith(prefix + ".")}


def attach_proposal_network(model: nn.Module, checkpoint: str, device: torch.device) -> None:
    """Make ``model``'s proposal generator propose as the model in ``checkpoint`` did: load that
    model's proposal generator weights into ``model.proposal_generator`` and give it a frozen
    copy of that model's backbone to read (``model.proposal_features``)."""
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)["model"]
    backbone = copy.deepcopy(model.backbone)
    backbone.load_state_dict(_under(state, "backbone"))
    model.proposal_generator.load_state_dict(_under(state, "proposal_generator"))
    model.proposal_features = FrozenFeatures(backbone.to(device))


def _final(cfg: Any, name: str) -> str:
    return os.path.join(cfg_get(cfg, "train.output_dir"), name, _FINAL)


def _init_path(cfg: Any, stages: list[Stage], index: int) -> str:
    source = stages[index].init_from
    if source == "init_checkpoint":
        return cfg_get(cfg, "train.init_checkpoint", "") or ""
    if source == "previous":
        return _final(cfg, stages[index - 1].name)
    if source in [s.name for s in stages]:
        return _final(cfg, source)  # an earlier stage's, checked by parse_stages
    return source  # a checkpoint path


def read_completed(output_dir: str) -> list[str]:
    """The stages ``<output_dir>/stages.json`` lists as completed; ``[]`` without a readable file."""
    path = os.path.join(output_dir, STATE_FILE)
    try:
        with open(path, encoding="utf-8") as f:
            return list(json.load(f)["completed"])
    except FileNotFoundError:
        return []
    except (OSError, ValueError, KeyError, TypeError) as e:
        logger.warning(f"Cannot read {path} ({e}); no stage counts as completed")
        return []


def _write_completed(output_dir: str, completed: list[str]) -> None:
    if not is_main_process():
        return
    os.makedirs(output_dir, exist_ok=True)
    text = json.dumps({"completed": completed}, indent=2).encode("utf-8")
    atomic_write(os.path.join(output_dir, STATE_FILE), lambda f: f.write(text))


def _first_incomplete(cfg: Any, stages: list[Stage], completed: list[str]) -> int:
    for i, stage in enumerate(stages):
        if stage.name not in completed or not os.path.isfile(_final(cfg, stage.name)):
            return i
    return len(stages)


def _seed_stage(cfg: Any, index: int) -> None:
    seed = cfg_get(cfg, "train.seed", None)
    if seed is not None and seed >= 0:
        seed_all_rng(seed + get_rank() + _SEED_STRIDE * index)


def _forget_old_run(stage_dir: str) -> None:
    """A stage that starts afresh must not be resumed from a checkpoint of an earlier run, should
    it be killed before its own first checkpoint: drop the stale ``last_checkpoint`` pointer."""
    pointer = os.path.join(stage_dir, "last_checkpoint")
    if is_main_process() and os.path.isfile(pointer):
        logger.info(f"Starting {stage_dir} afresh: removing the old run's {pointer}")
        os.remove(pointer)


def _build_stage_model(cfg: Any, stages: list[Stage], index: int, scfg: Any, resuming: bool) -> nn.Module:
    """The stage's model with its initial weights (unless it resumes from its own checkpoint) and,
    for ``proposals_from``, the frozen proposal network."""
    from rcnnzoo.config import instantiate

    stage = stages[index]
    device = resolve_device(cfg_get(scfg, "train.device", None))
    model = instantiate(scfg.model)
    init = _init_path(cfg, stages, index)
    if not resuming:
        if init:
            # Only the config's checkpoint may come from another class count (a fine-tune).
            mismatch = class_dependent_prefixes(model) if stage.init_from == "init_checkpoint" else False
            Checkpointer(model).load(init, checkpointables=[], allow_shape_mismatch=mismatch)
        else:
            logger.info(
                f"{stage.name}: no initial checkpoint; the model starts from its random initialization"
            )
    if stage.proposals_from is not None:
        attach_proposal_network(model, _final(cfg, stage.proposals_from), device)
    return model


def _copy_final(src: str, dst: str) -> None:
    if not is_main_process():
        return
    with open(src, "rb") as f:
        atomic_write(dst, lambda out: shutil.copyfileobj(f, out))
    logger.info(f"Final model: {dst} (a copy of {src})")


def train_in_stages(cfg: Any, model: nn.Module, *, resume: bool = False) -> dict[str, Any]:
    """Train the stages of ``cfg.train.stages`` in order (see the module docstring).

    Args:
        cfg: a config with ``train.stages`` and ``train.output_dir``.
        model: the model of ``cfg.model``; it receives the final weights. Each stage trains a
            model of its own, built from its stage config.
        resume: skip the completed stages and resume the first incomplete one from its last checkpoint.

    Returns:
        The evaluation results of the final model (``{}`` on other processes than the main one,
        or without test data).
    """
    from .default_train import _evaluate_and_draw, do_train, has_test_data

    stages = parse_stages(cfg)
    output_dir = cfg_get(cfg, "train.output_dir", None)
    if not output_dir:
        raise ValueError("train.stages needs train.output_dir: each stage writes to <output_dir>/<name>")
    plan = ", ".join(f"{s.name} ({s.max_iter} it, {s.train_mode})" for s in stages)
    logger.info(f"Training in {len(stages)} stages, {sum(s.max_iter for s in stages)} iterations: {plan}")
    completed = read_completed(output_dir) if resume else []
    first = _first_incomplete(cfg, stages, completed)
    completed = [s.name for s in stages[:first]]
    _write_completed(output_dir, completed)
    results: dict[str, Any] = {}
    for i, stage in enumerate(stages):
        tag = f"Stage {i + 1}/{len(stages)} {stage.name!r}"
        if i < first:
            logger.info(f"{tag}: completed earlier ({_final(cfg, stage.name)}); skipped")
            continue
        synchronize()  # the previous stage's model_final, written by the main process, is complete
        scfg = stage_config(cfg, stage)
        stage_dir = cfg_get(scfg, "train.output_dir")
        stage_resume = resume and i == first
        if not stage_resume:
            _forget_old_run(stage_dir)
        # a run stage is not resumed from within: it starts again from its initial weights
        own_checkpoint = os.path.isfile(os.path.join(stage_dir, "last_checkpoint"))
        resuming = stage_resume and stage.run is None and own_checkpoint
        source = "its last checkpoint" if resuming else _init_path(cfg, stages, i) or "scratch"
        extra = f", proposals from {stage.proposals_from}" if stage.proposals_from else ""
        logger.info(
            f"{tag}: {stage.max_iter} iterations, train_mode={stage.train_mode}, from {source}{extra}, "
            f"freeze {list(scfg.train.freeze)}, in {stage_dir}"
        )
        _seed_stage(cfg, i)
        stage_model = _build_stage_model(cfg, stages, i, scfg, resuming)
        if is_main_process():
            _save_stage_config(scfg, stage_dir)
        if stage.run is not None:
            results = _run_stage(scfg, stage, stage_model)
        else:
            results = do_train(scfg, stage_model, resume=stage_resume)
        synchronize()
        completed.append(stage.name)
        _write_completed(output_dir, completed)
        del stage_model
    final = os.path.join(output_dir, _FINAL)
    _copy_final(_final(cfg, stages[-1].name), final)
    synchronize()
    model.to(resolve_device(cfg_get(cfg, "train.device", None)))
    Checkpointer(model).load(final, checkpointables=[])
    # The last stage evaluated its model (the final one) unless it had nothing left to train; the
    # main process decides for all, since evaluation is a collective step.
    evaluated = all_gather(bool(results))[0]
    if has_test_data(cfg) and not evaluated:
        results = _evaluate_and_draw(cfg, model)
    return results


def _run_stage(scfg: Any, stage: Stage, model: nn.Module) -> dict[str, Any]:
    """A ``run`` stage: its step changes ``model``, which is then saved as the stage's
    ``model_final.pth`` (with the training data's classes) and evaluated if the stage evaluates.

    Returns:
        the evaluation results, or ``{}``.
    """
    from rcnnzoo.checkpoint import ClassMetadata, class_metadata_of
    from rcnnzoo.config import instantiate
    from rcnnzoo.utils.events import EventStorage

    from .default_train import _evaluate_and_draw, has_test_data

    step = instantiate(stage.run)
    if not callable(step):
        raise TypeError(
            f"train.stages {stage.name!r}: 'run' must build a callable step(cfg, model), got {type(step).__name__}"
        )
    model.to(resolve_device(cfg_get(scfg, "train.device", None)))
    summary = step(scfg, model)
    logger.info(f"{stage.name}: {summary}")
    stage_dir = cfg_get(scfg, "train.output_dir")
    extra: dict[str, Any] = {}
    names = cfg_get(scfg, "dataloader.train.dataset.names", None)
    metadata = class_metadata_of(names) if names else None
    if metadata is not None:
        extra["metadata"] = ClassMetadata(metadata)
    checkpointer = Checkpointer(model, stage_dir, save_to_disk=is_main_process(), **extra)
    checkpointer.save("model_final", tag_last=False)
    synchronize()
    if not (stage.evaluate and has_test_data(scfg)):
        return {}
    # the drawings also go to an event storage, which a training loop would have open
    with EventStorage(start_iter=0):
        return _evaluate_and_draw(scfg, model)


def _save_stage_config(scfg: Any, stage_dir: str) -> None:
    from rcnnzoo.config import LazyConfig

    os.makedirs(stage_dir, exist_ok=True)
    try:
        LazyConfig.save(scfg, os.path.join(stage_dir, "config.yaml"))
    except Exception as e:  # a copy for reading; the run's own config.yaml is in output_dir
        logger.warning(f"Could not save {stage_dir}/config.yaml: {type(e).__name__}: {e}")
