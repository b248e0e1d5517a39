"""Optimizer parameter groups and learning-rate schedules, written to be named in lazy configs."""

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
from .lr_scheduler import LRMultiplier, WarmupParamScheduler

__all__ = [
    "get_default_optimizer_params",
    "NORM_MODULE_TYPES",
    "WarmupParamScheduler",
    "LRMultiplier",
    # fvcore's schedules, re-exported so configs import every schedule from one place.
    "ParamScheduler",
    "CompositeParamScheduler",
    "ConstantParamScheduler",
    "CosineParamScheduler",
    "LinearParamScheduler",
    "MultiStepParamScheduler",
    "StepWithFixedGammaParamScheduler",
]
