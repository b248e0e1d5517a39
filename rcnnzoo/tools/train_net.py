"""Train and/or evaluate a model from a lazy config: the front door of rcnnzoo.

Examples::

    python tools/train_net.py --config-file Shapes/faster_rcnn_tiny_fpn.py
    python tools/train_net.py --config-file configs/COCO-Detection/faster_rcnn_R_50_FPN_1x.py \\
        --num-gpus 8 train.output_dir=output/r50_fpn dataloader.train.total_batch_size=16
    python tools/train_net.py --config-file Shapes/faster_rcnn_tiny_fpn.py --eval-only \\
        --init-from output/shapes_faster_rcnn_tiny_fpn/model_final.pth
    python tools/train_net.py --config-file my_data.py --init-from output/shapes/model_final.pth
    # published weights by their model zoo name (model_zoo/MODEL_ZOO.md), converted on first use
    python tools/train_net.py --eval-only --config-file torchvision/maskrcnn_resnet50_fpn_v2
    python tools/train_net.py --config-file my_coco_subset.py --init-from torchvision/fasterrcnn_resnet50_fpn

``--resume`` continues a run from its own last checkpoint with everything (optimizer, schedule,
data position); ``--init-from`` (= ``train.init_checkpoint``) takes weights only, and a checkpoint
trained on another number of classes re-initialises just the predictor layers. Weights may be a
path, an http(s):// or file:// URL, or a model zoo name.

``--config-file`` takes a path, the name of a shipped config (relative to ``configs/``), or a
model zoo name: that entry's config with its weights as ``train.init_checkpoint``.
Overrides come last as ``KEY=VALUE`` (values parsed as Python literals; ``+KEY=VALUE`` adds a key).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from collections.abc import Sequence
from typing import Any

from rcnnzoo.checkpoint import Checkpointer
from rcnnzoo.config import LazyConfig, instantiate, resolve_config_path
from rcnnzoo.engine import (
    default_argument_parser,
    default_setup,
    do_test,
    do_train,
    draw_predictions,
    has_test_data,
    launch,
    launched_by_torchrun,
    resolve_device,
)
from rcnnzoo.engine.defaults import cfg_get
from rcnnzoo.model_zoo import get_config
from rcnnzoo.model_zoo.catalog import is_zoo_name
from rcnnzoo.modeling import optimize_for_inference
from rcnnzoo.utils.comm import is_main_process

__all__ = ["main", "run", "load_config"]

logger = logging.getLogger("rcnnzoo.train_net")


def load_config(config_file: str, overrides: Sequence[str] | None) -> Any:
    """Load ``config_file`` (a path, a shipped config name or a model zoo name) and apply ``KEY=VALUE``
    overrides."""
    if not config_file:
        raise SystemExit("train_net: --config-file is required (a path or e.g. Shapes/faster_rcnn_tiny_fpn.py)")
    if is_zoo_name(config_file):  # the entry's config, starting from the entry's weights
        cfg = get_config(config_file, trained=True)
    else:
        cfg = LazyConfig.load(resolve_config_path(config_file))
    return LazyConfig.apply_overrides(cfg, list(overrides or []))


def check_image_format(cfg: Any, model: Any) -> None:
    """Fail early when the data loaders decode images in another channel order than the model expects.

    A BGR/RGB mix-up trains and evaluates without any error, only worse; it is a config mistake.
    """
    expected = getattr(model, "input_format", None)
    if expected is None:
        return
    for split in ("train", "test"):
        fmt = cfg_get(cfg, f"dataloader.{split}.mapper.image_format", None)
        if fmt is not None and fmt != expected:
            raise ValueError(
                f"dataloader.{split}.mapper.image_format={fmt!r} but model.input_format={expected!r}; "
                f"set dataloader.{split}.mapper.image_format=model.input_format in the config"
            )


def check_training_data(cfg: Any, model: Any, has_test: bool) -> None:
    """Check the datasets before training starts (``tools/check_dataset.py`` in short) and stop with
    the report when one has errors: a bad box or a wrong ``num_classes`` found now costs seconds,
    found as a NaN an hour into training it costs the hour. ``train.check_data=False`` skips this.

    Every process runs the same checks, so all stop together.
    """
    from rcnnzoo.data import check_datasets

    reports = check_datasets(cfg, split="both" if has_test else "train", model=model)
    for report in reports:
        logger.info(report.format())
    failed = [r for r in reports if not r.ok]
    if failed:
        raise SystemExit(
            "Stopped before training: the data has problems (see tools/check_dataset.py; "
            "dataloader.train.dataset.bad_boxes='drop' or 'clip' handles bad boxes).\n\n"
            + "\n\n".join(r.format() for r in failed)
        )


def _report(cfg: Any, results: dict[str, Any]) -> None:
    """Log the headline numbers and draw a few evaluation images (main process only)."""
    if not is_main_process():
        return
    output_dir = cfg_get(cfg, "train.output_dir", None)
    flat = {
        f"{task}/{name}": value
        for task, metrics in results.items()
        if isinstance(metrics, dict)
        for name, value in metrics.items()
    }
    if flat:
        logger.info("Evaluation results: " + json.dumps({k: round(v, 4) for k, v in flat.items()}))
    if output_dir:
        with open(os.path.join(output_dir, "final_results.json"), "w", encoding="utf-8") as f:
            json.dump(flat, f, indent=2)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """One process's work: set up, train (unless ``--eval-only``), evaluate, draw.

    Returns:
        The final evaluation results, nested like ``{"bbox": {"AP": 0.72, "AP50": 0.93, ...}}``
        (``{}`` on processes other than the main one or when the config has no test data).
    """
    cfg = load_config(args.config_file, args.opts)
    if getattr(args, "init_from", None):
        cfg.train.init_checkpoint = args.init_from
    default_setup(cfg, args)
    model = instantiate(cfg.model).to(resolve_device(cfg_get(cfg, "train.device", None)))
    logger.info(f"Model:\n{model}")
    check_image_format(cfg, model)
    has_test = has_test_data(cfg)
    if not args.eval_only and cfg_get(cfg, "train.check_data", True):
        check_training_data(cfg, model, has_test)
    if args.eval_only:
        Checkpointer(model).load(cfg_get(cfg, "train.init_checkpoint", ""))
        if getattr(args, "optimize", True):
            optimize_for_inference(model)
        results = do_test(cfg, model) if has_test else {}
    else:
        # do_train evaluates after the last iteration when the config has test data.
        results = do_train(cfg, model, resume=args.resume)
    _report(cfg, results)
    output_dir = cfg_get(cfg, "train.output_dir", None)
    # (after training, the last evaluation has drawn them already)
    if args.eval_only and has_test and output_dir and is_main_process():
        draw_predictions(cfg, model, output_dir)
    return results


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Parse the command line and run on one or several processes (``--num-gpus``, machines).

    Returns:
        The final evaluation results where this process computed them (single process, or rank 0
        under ``torchrun``), else ``{}``.
    """
    args = default_argument_parser(epilog=__doc__).parse_args(argv)
    if args.num_gpus * args.num_machines <= 1 and not launched_by_torchrun():
        return run(args)
    results = launch(
        run,
        args.num_gpus,
        num_machines=args.num_machines,
        machine_rank=args.machine_rank,
        dist_url=args.dist_url,
        args=(args,),
    )
    return results or {}


if __name__ == "__main__":
    main()
