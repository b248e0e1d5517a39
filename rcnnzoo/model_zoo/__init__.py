"""The model zoo: shipped configs by name, and other projects' published weights by name.

Configs (``rcnnzoo/model_zoo/configs``, the repository's ``configs/``): ``get_config`` is the way
for a user's config file that lives anywhere to start from a shipped one::

    from rcnnzoo.model_zoo import get_config

    cfg = get_config("Shapes/faster_rcnn_tiny_fpn.py")
    model, dataloader, optimizer, lr_multiplier, train = (
        cfg.model, cfg.dataloader, cfg.optimizer, cfg.lr_multiplier, cfg.train
    )

Weights (the catalog, :mod:`.catalog`, documented in ``model_zoo/MODEL_ZOO.md``): torchvision's
and detectron2's COCO detectors and ImageNet backbones, named ``torchvision/<builder name>`` and
``detectron2/<config path>``; downloaded, checked, converted and cached on first use::

    from rcnnzoo import model_zoo

    model_zoo.list_models()  # ["torchvision/fasterrcnn_resnet50_fpn", ...]
    model = model_zoo.get("torchvision/maskrcnn_resnet50_fpn_v2")  # eval mode, COCO weights
    cfg = model_zoo.get_config("detectron2/COCO-Detection/faster_rcnn_R_50_FPN_3x", trained=True)
    model_zoo.get_checkpoint_url("torchvision/fasterrcnn_resnet50_fpn")  # the published file

As in detectron2's ``model_zoo``, ``trained=True`` puts the weights in ``train.init_checkpoint``;
here it is the zoo name rather than the URL, because the published file has another project's
layout: :class:`rcnnzoo.checkpoint.Checkpointer` resolves the name to the converted file.
"""

from __future__ import annotations

import os
from typing import Any

from torch import nn

from rcnnzoo.config import LazyConfig, resolve_config_path

from .catalog import (
    CATALOG,
    UnknownModelError,
    ZooEntry,
    entry_for_config,
    get_entry,
    is_zoo_name,
    list_models,
    looks_like_zoo_name,
    resolve_weights,
)
from .download import DownloadError, download

__all__ = [
    "CATALOG",
    "DownloadError",
    "UnknownModelError",
    "ZooEntry",
    "download",
    "get",
    "get_checkpoint_url",
    "get_config",
    "get_config_file",
    "get_entry",
    "list_models",
    "resolve_weights",
]


def _entry_for(name: str) -> ZooEntry | None:
    """The catalog entry of a zoo name; ``None`` for a config path. Raises for a zoo-like name
    (``torchvision/...``) that is not in the catalog."""
    if is_zoo_name(name) or (looks_like_zoo_name(name) and not os.path.isfile(name)):
        return get_entry(name)
    return None


def _config_of(entry: ZooEntry) -> str:
    if entry.config is None:
        raise ValueError(
            f"{entry.name} ({entry.arch} ImageNet weights) has no shipped config; set "
            f"train.init_checkpoint={entry.name!r} in a config whose backbone is a {entry.arch}"
        )
    return entry.config


def get_config_file(name: str) -> str:
    """The path of shipped config ``name`` (e.g. ``"COCO-Detection/faster_rcnn_R_50_FPN_1x.py"``),
    or of the config of zoo entry ``name`` (e.g. ``"torchvision/fasterrcnn_resnet50_fpn"``).

    Raises:
        FileNotFoundError: no such config; the message suggests close names.
        UnknownModelError: a zoo name (``torchvision/...``, ``detectron2/...``) not in the catalog.
    """
    entry = _entry_for(name)
    return str(resolve_config_path(_config_of(entry) if entry else name))


def get_config(name: str, trained: bool = False) -> Any:
    """Load a config as a fresh ``DictConfig`` (each call returns a new copy).

    Args:
        name: a shipped config (``"COCO-Detection/faster_rcnn_R_50_FPN_1x.py"``) or a file path, or
            a zoo name (``"torchvision/fasterrcnn_resnet50_fpn"``: that entry's config).
        trained: set ``train.init_checkpoint`` to the zoo entry's weights: the entry of ``name``,
            or for a config path the detector published for it (as detectron2's
            ``get_config(path, trained=True)``). For an ImageNet backbone's name, its config is one
            trained from it, and the weights are that backbone.
    Raises:
        FileNotFoundError, UnknownModelError (also with ``trained=True`` for a config that no
        published detector was trained with), ValueError (a backbone without a shipped config).
    """
    entry = _entry_for(name)
    cfg = LazyConfig.load(get_config_file(name))
    if trained:
        cfg.train.init_checkpoint = (entry or entry_for_config(name)).name
    return cfg


def get_checkpoint_url(name: str) -> str:
    """The URL of the published weights of zoo entry ``name``, or (as in detectron2) of the detector
    published for shipped config ``name``. It is the source's file, before conversion."""
    entry = _entry_for(name)
    return (entry or entry_for_config(name)).url


def get(name: str, trained: bool = True, device: str = "cpu") -> nn.Module:
    """The model of zoo entry (or shipped config) ``name``, on ``device``, in eval mode.

    With ``trained``, the published weights are loaded: downloaded and converted on the first call
    (into ``$RCNNZOO_CACHE``), read from the cache afterwards. Without, the model keeps its
    initialization.

    Raises:
        UnknownModelError, DownloadError, and the converter's errors; ValueError for an ImageNet
        backbone (weights to train a detector from, not a model: use ``get_config(name,
        trained=True)`` or ``train.init_checkpoint=name``).
    """
    from rcnnzoo.checkpoint import Checkpointer
    from rcnnzoo.config import instantiate

    entry = _entry_for(name)
    if entry is not None and entry.kind != "detector":
        how = f"get_config({name!r}, trained=True) or " if entry.config else ""
        raise ValueError(
            f"{name} holds ImageNet weights for a detector's backbone, not a model to run; train from "
            f"them with {how}train.init_checkpoint={name!r}"
        )
    cfg = get_config(name, trained=trained)
    model = instantiate(cfg.model).to(device)
    if trained:
        Checkpointer(model).load(cfg.train.init_checkpoint, checkpointables=[])
    return model.eval()
