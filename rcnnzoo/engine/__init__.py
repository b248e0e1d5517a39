"""Training engine: the train loop and its hooks, script defaults, predictors, and the distributed launcher.

``do_train``/``do_test`` (in :mod:`rcnnzoo.engine.default_train`) are the functions a training
script calls; everything they build is public here for scripts that assemble their own loop.
"""

from .default_train import (
    build_optimizer,
    create_ddp_model,
    default_writers,
    do_test,
    do_train,
    has_test_data,
)
from .defaults import (
    DefaultPredictor,
    cfg_get,
    collect_env_info,
    default_argument_parser,
    default_setup,
    resolve_device,
    seed_all_rng,
)
from .draw import draw_predictions
from .hooks import (
    BestCheckpointer,
    EvalHook,
    IterationTimer,
    LRScheduler,
    PeriodicCheckpointer,
    PeriodicWriter,
)
from .launch import launch, launched_by_torchrun
from .predictor import Predictor, resolve_metadata
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
    "BestCheckpointer",
    "PeriodicWriter",
    # scripts
    "default_argument_parser",
    "default_setup",
    "seed_all_rng",
    "collect_env_info",
    "cfg_get",
    "resolve_device",
    "DefaultPredictor",
    "Predictor",
    "resolve_metadata",
    "do_train",
    "do_test",
    "has_test_data",
    "draw_predictions",
    "build_optimizer",
    "create_ddp_model",
    "default_writers",
    "launch",
    "launched_by_torchrun",
]
