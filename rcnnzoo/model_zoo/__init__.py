"""The shipped configs (``rcnnzoo/model_zoo/configs``, the repository's ``configs/``) by name.

``get_config("Shapes/faster_rcnn_tiny_fpn.py")`` is the way for a user's config file that lives
anywhere to start from a shipped one::

    from rcnnzoo.model_zoo import get_config

    cfg = get_config("Shapes/faster_rcnn_tiny_fpn.py")
    model, dataloader, optimizer, lr_multiplier, train = (
        cfg.model, cfg.dataloader, cfg.optimizer, cfg.lr_multiplier, cfg.train
    )
"""

from __future__ import annotations

from typing import Any

from rcnnzoo.config import LazyConfig, resolve_config_path

from .download import DownloadError, download

__all__ = ["DownloadError", "download", "get_config", "get_config_file"]


def get_config_file(name: str) -> str:
    """The path of shipped config ``name`` (e.g. ``"COCO-Detection/faster_rcnn_R_50_FPN_1x.py"``).

    Raises:
        FileNotFoundError: no such config; the message suggests close names.
    """
    return str(resolve_config_path(name))


def get_config(name: str) -> Any:
    """Load shipped config ``name`` as a fresh ``DictConfig`` (each call returns a new copy)."""
    return LazyConfig.load(get_config_file(name))
