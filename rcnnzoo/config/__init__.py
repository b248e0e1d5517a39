"""Lazy configs: Python files of ``LazyCall`` nodes that :func:`instantiate` turns into objects.

Example::

    from rcnnzoo.config import L, LazyConfig, instantiate

    cfg = LazyConfig.load("configs/my_project/faster_rcnn_tiny.py")
    cfg = LazyConfig.apply_overrides(cfg, ["model.backbone.bottom_up.width=64"])
    model = instantiate(cfg.model)
"""

from .errors import ConfigError
from .instantiate import build_part, config_path, instantiate, is_config
from .lazy_call import L, LazyCall, locate
from .lazy_config import LazyConfig
from .paths import configs_root, resolve_config_path

__all__ = [
    "ConfigError",
    "L",
    "LazyCall",
    "LazyConfig",
    "build_part",
    "config_path",
    "configs_root",
    "instantiate",
    "is_config",
    "locate",
    "resolve_config_path",
]
