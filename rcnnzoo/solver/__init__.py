"""Optimizer parameter groups, learning-rate schedules and gradient clipping, to be named in lazy configs."""

from fvcore.common.param_scheduler import (
    CompositeParamScheduler,
    ConstantParamScheduler,
    CosineParamScheduler,
    LinearParamScheduler,
    MultiStepParamScheduler,
    ParamScheduler,
    StepWithFixedGammaParamScheduler,
)

from .build import NORM_MODULE_TYPES, get_default_optimizer_params
from .grad_clip import GradClipper, build_grad_clipper, grad_clipper_from_config
from .lr_scheduler import LRMultiplier, WarmupParamScheduler
from .schedules import build_lr_schedule, cosine_schedule, multistep_schedule

__all__ = [
    "get_default_optimizer_params",
    "NORM_MODULE_TYPES",
    "WarmupParamScheduler",
    "LRMultiplier",
    "cosine_schedule",
    "multistep_schedule",
    "build_lr_schedule",
    "GradClipper",
    "build_grad_clipper",
    "grad_clipper_from_config",
    # fvcore's schedules, re-exported so configs import every schedule from one place.
    "ParamScheduler",
    "CompositeParamScheduler",
    "ConstantParamScheduler",
    "CosineParamScheduler",
    "LinearParamScheduler",
    "MultiStepParamScheduler",
    "StepWithFixedGammaParamScheduler",
]
