"""Training engine: the train loop and its hooks, script defaults, and the distributed launcher.

``do_train``/``do_test`` (in :mod:`rcnnzoo.engine.default_train`) are the functions a training
script calls; everything they build is public here for scripts that assemble their own loop.
"""

from .default_train import build_optimizer, create_ddp_model, default_writers, do_test, do_train
from .defaults import (
    DefaultPredictor,
    cfg_get,
    collect_env_info,
    default_argument_parser,
    default_setup,
    seed_all_rng,
)
from .hooks import EvalHook, IterationTimer, LRScheduler, PeriodicCheckpointer, PeriodicWriter
from .launch import launch
from .train_loop import AMPTrainer, HookBase, Priority, SimpleTrainer, TrainerBase

__all__ = [
    # train loop
    "HookBase",
    "Priority",
    "TrainerBase",
    "SimpleTrainer",
    "AMPTrainer",
    # hooks
    "IterationTimer",
    "LRScheduler",
    "PeriodicCheckpointer",
    "EvalHook",
    "PeriodicWriter",
    # scripts
    "default_argument_parser",
    "default_setup",
    "seed_all_rng",
    "collect_env_info",
    "cfg_get",
    "DefaultPredictor",
    "do_train",
    "do_test",
    "build_optimizer",
    "create_ddp_model",
    "default_writers",
    "launch",
]
