"""What every training/inference script repeats: the command line, the run setup, and a predictor.

These read a lazy config with detectron2's layout: ``model``, ``dataloader.train/test/evaluator``,
``optimizer``, ``lr_multiplier`` and ``train`` (``output_dir``, ``max_iter``, ``init_checkpoint``,
``checkpointer.period``, ``eval_period``, ``log_period``, ``device``, ``amp.enabled``, ``seed``, and
optionally ``clip_grad`` and ``best_checkpoint``; see ``docs/training.md``).
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import random
import sys
from datetime import datetime
from typing import Any

import numpy as np
import torch

from rcnnzoo.utils.comm import get_rank, get_world_size, is_main_process
from rcnnzoo.utils.logger import setup_logger

from .predictor import Predictor

__all__ = [
    "default_argument_parser",
    "default_setup",
    "seed_all_rng",
    "collect_env_info",
    "cfg_get",
    "resolve_device",
    "DefaultPredictor",
]

logger = logging.getLogger(__name__)

_MISSING = object()


def cfg_get(cfg: Any, dotted_key: str, default: Any = _MISSING) -> Any:
    """Read ``cfg.a.b.c`` from nested dicts/DictConfigs, returning ``default`` where a level is absent.

    Without ``default`` an absent key raises ``KeyError`` naming the full dotted key.
    """
    node = cfg
    for part in dotted_key.split("."):
        if node is not None and part in node:
            node = node[part]
            continue
        if default is _MISSING:
            raise KeyError(f"The config has no {dotted_key!r} (missing at {part!r})")
        return default
    return node


def default_argument_parser(epilog: str | None = None) -> argparse.ArgumentParser:
    """The command line shared by the tools: config, resume/eval-only, distributed launch, overrides.

    Overrides come last as ``KEY=VALUE`` pairs, e.g. ``train.max_iter=1000 optimizer.lr=0.01``.
    """
    parser = argparse.ArgumentParser(epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config-file", default="", metavar="FILE", help="path to a lazy config (.py/.yaml)")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="resume from <output_dir>/last_checkpoint if it exists, else start from train.init_checkpoint",
    )
    parser.add_argument(
        "--init-from",
        default=None,
        metavar="CHECKPOINT",
        help="start from these weights only (sets train.init_checkpoint): a path, an http(s):// or file:// "
        "URL, or a model zoo name such as torchvision/fasterrcnn_resnet50_fpn; a different number of classes "
        "re-initialises the predictor layers. --resume, when a checkpoint exists, takes precedence",
    )
    parser.add_argument("--eval-only", action="store_true", help="evaluate the loaded weights and exit")
    parser.add_argument(
        "--no-optimize",
        dest="optimize",
        action="store_false",
        help="with --eval-only: evaluate the model as built, not optimized for inference (norms folded "
        "into convs, channels-last; same detections up to float rounding, faster)",
    )
    parser.add_argument("--num-gpus", type=int, default=1, help="processes (GPUs) per machine")
    parser.add_argument("--num-machines", type=int, default=1, help="machines in the job")
    parser.add_argument(
        "--machine-rank", type=int, default=0, help="this machine's rank in [0, num_machines)"
    )
    parser.add_argument(
        "--dist-url",
        default="auto",
        help="rendezvous URL tcp://HOST:PORT; 'auto' picks a free local port (single machine)",
    )
    parser.add_argument(
        "opts",
        default=None,
        nargs=argparse.REMAINDER,
        help="config overrides as KEY=VALUE pairs at the end of the command line",
    )
    return parser


def seed_all_rng(seed: int | None = None) -> int:
    """Seed Python's ``random``, NumPy and torch; ``None`` or a negative seed draws a random one.

    Returns:
        The seed used (log it to reproduce a run).
    """
    if seed is None or seed < 0:
        seed = (
            os.getpid() + int(datetime.now().strftime("%S%f")) + int.from_bytes(os.urandom(2), "big")
        ) % 2**31
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return seed


def collect_env_info() -> str:
    """A few lines describing the software and devices, for the top of every log."""
    lines = [
        f"Python {sys.version.split()[0]} on {platform.platform()}",
        f"torch {torch.__version__}, CUDA available: {torch.cuda.is_available()}",
    ]
    try:
        import torchvision

        lines.append(f"torchvision {torchvision.__version__}")
    except ImportError:
        lines.append("torchvision not installed")
    for i in range(torch.cuda.device_count()):
        lines.append(f"cuda:{i} {torch.cuda.get_device_name(i)}")
    lines.append(f"CPU threads used by torch: {torch.get_num_threads()}")
    return "\n".join(lines)


def default_setup(cfg: Any, args: argparse.Namespace) -> None:
    """Prepare a run: output directory, logging, a copy of the config, seeding.

    * creates ``cfg.train.output_dir`` and logs to ``<output_dir>/log.txt`` (and the console on rank 0);
    * logs the environment, the command line and the config file;
    * saves the resolved config as ``<output_dir>/config.yaml`` (rank 0), so a run can be repeated;
    * seeds every RNG with ``cfg.train.seed`` + rank (``-1``/``None``: a random seed, logged).
    """
    output_dir = cfg_get(cfg, "train.output_dir", None)
    rank = get_rank()
    if output_dir and is_main_process():
        os.makedirs(output_dir, exist_ok=True)
    setup_logger(output_dir, name="rcnnzoo", distributed_rank=rank)
    setup_logger(output_dir, name="fvcore", distributed_rank=rank)
    logger.info(f"Rank of current process: {rank}. World size: {get_world_size()}")
    logger.info("Environment info:\n" + collect_env_info())
    logger.info(f"Command line arguments: {args}")
    config_file = getattr(args, "config_file", "")
    if config_file and os.path.isfile(config_file):
        with open(config_file, encoding="utf-8") as f:
            logger.info(f"Contents of config file {config_file}:\n{f.read()}")
    if output_dir and is_main_process():
        _save_config(cfg, os.path.join(output_dir, "config.yaml"))
    seed = cfg_get(cfg, "train.seed", None)
    used = seed_all_rng(None if seed is None or seed < 0 else seed + rank)
    logger.info(f"Using seed {used}")


def _save_config(cfg: Any, path: str) -> None:
    from rcnnzoo.config import LazyConfig

    LazyConfig.save(cfg, path)
    logger.info(f"Full config saved to {path}")


class DefaultPredictor(Predictor):
    """Run a model from a lazy config on single images; for demos and quick checks.

    A :class:`~rcnnzoo.engine.predictor.Predictor` with ``batch_size=1`` that takes exactly one
    image; it has the same attributes (``model``, ``input_format``, ``thing_classes``, ...).

    Example::

        predictor = DefaultPredictor(cfg, weights="output/model_final.pth")
        outputs = predictor(image)          # image: HWC uint8 in cfg.model.input_format
        instances = outputs["instances"]    # in the coordinates of the input image
    """

    def __init__(self, cfg: Any, weights: str | None = None, *, optimize: bool = True) -> None:
        """
        Args:
            cfg: a lazy config with ``model`` (and ``model.input_format``),
                ``dataloader.test.mapper.augmentations`` and optionally ``train.device``.
            weights: a checkpoint; ``None`` uses ``cfg.train.init_checkpoint``; ``""`` loads nothing.
            optimize: see :class:`~rcnnzoo.engine.predictor.Predictor`.
        """
        super().__init__(cfg, weights, batch_size=1, optimize=optimize)

    def __call__(self, image: np.ndarray) -> dict[str, Any]:
        """Detect objects in one image.

        Args:
            image: HWC uint8 array whose channels are in ``cfg.model.input_format`` ("BGR" or "RGB").

        Returns:
            ``{"instances": Instances}`` for the image, boxes in its original pixel coordinates.
        """
        if not isinstance(image, np.ndarray) or image.ndim != 3:
            shape = getattr(image, "shape", None)
            raise ValueError(
                f"DefaultPredictor expects an HWC numpy image, got {type(image).__name__} {shape}"
            )
        return super().__call__(image)


def resolve_device(name: str | None) -> torch.device:
    """``cfg.train.device`` as a device: ``"auto"``/``None`` mean CUDA when available, else the CPU."""
    if name in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)
