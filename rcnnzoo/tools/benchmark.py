"""Measure training and inference speed of a config's model, optionally beside torchvision's.

Examples::

    python tools/benchmark.py --config-file Shapes/faster_rcnn_tiny_fpn.py --task all
    python tools/benchmark.py --config-file COCO-Detection/faster_rcnn_R_50_FPN_1x.py \\
        --torchvision fasterrcnn_resnet50_fpn --image-size 800 1216 --task inference --score-thresh 0
    python tools/benchmark.py --suite targets --json targets.json  # every target of issue #7

How it stays honest:

* both models see the same images (random pixels, fixed seed) and, for training, the same random
  ground-truth boxes; images are already at the size under test, and torchvision's internal
  resize is set to keep them as they are (so neither model resizes);
* both get the same warm-up iterations before timing, and CUDA is synchronized before every
  clock read;
* torchvision's float conversion of the inputs is done before timing (ours converts inside the
  model and is timed doing it);
* models are built with the same random weights: torchvision's initialization, converted into
  ours (:func:`share_weights`), so both keep the same proposals and detections and their
  post-processing does the same work; torchvision's ResNet backbone gets the same frozen BN and
  frozen stages as ours (its builders make everything trainable when built without weights,
  which would make it slower than it is in real use);
* our inference runs the model as :class:`rcnnzoo.engine.Predictor` does, optimized for
  inference (:func:`rcnnzoo.modeling.optimize_for_inference`: norms folded into the convs,
  channels-last); ``--no-optimize`` times it as built. Training always runs the model as built.

Results are printed as a table and, with ``--json FILE``, written as JSON.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import platform
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch

from rcnnzoo.config import LazyConfig, instantiate, resolve_config_path
from rcnnzoo.engine.defaults import cfg_get, resolve_device
from rcnnzoo.structures import BitMasks, Boxes, Instances

__all__ = ["main", "make_inputs", "time_fn"]

logger = logging.getLogger("rcnnzoo.benchmark")

_TORCHVISION_ARCHS = (
    "fasterrcnn_resnet50_fpn",
    "fasterrcnn_resnet50_fpn_v2",
    "fasterrcnn_mobilenet_v3_large_fpn",
    "maskrcnn_resnet50_fpn",
    "maskrcnn_resnet50_fpn_v2",
)


def make_inputs(
    batch_size: int,
    height: int,
    width: int,
    num_classes: int,
    boxes_per_image: int = 8,
    seed: int = 0,
    with_masks: bool = False,
) -> list[dict[str, Any]]:
    """Random uint8 images with random ground truth, in rcnnzoo's input format (CPU tensors).

    Returns:
        ``batch_size`` dicts ``{"image": uint8 Tensor[3, H, W], "height", "width",
        "instances": Instances(gt_boxes Boxes[K], gt_classes int64 Tensor[K][, gt_masks BitMasks])}``;
        with ``with_masks`` each mask is the ellipse inscribed in its box.
    """
    gen = torch.Generator().manual_seed(seed)
    inputs = []
    for _ in range(batch_size):
        image = torch.randint(0, 256, (3, height, width), dtype=torch.uint8, generator=gen)
        xy = torch.rand(boxes_per_image, 2, generator=gen) * torch.tensor([width * 0.8, height * 0.8])
        wh = (torch.rand(boxes_per_image, 2, generator=gen) * 0.5 + 0.05) * torch.tensor([width, height])
        boxes = torch.cat([xy, torch.minimum(xy + wh, torch.tensor([width - 1.0, height - 1.0]))], dim=1)
        inst = Instances((height, width))
        inst.gt_boxes = Boxes(boxes)
        inst.gt_classes = torch.randint(0, num_classes, (boxes_per_image,), generator=gen)
        if with_masks:
            inst.gt_masks = BitMasks(_ellipses(boxes, height, width))
        inputs.append({"image": image, "height": height, "width": width, "instances": inst})
    return inputs


def _ellipses(boxes: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """bool Tensor[K, H, W]: the ellipse inscribed in each box."""
    ys = torch.arange(height, dtype=torch.float32)[None, :, None] + 0.5
    xs = torch.arange(width, dtype=torch.float32)[None, None, :] + 0.5
    cx, cy = ((boxes[:, 0] + boxes[:, 2]) / 2)[:, None, None], ((boxes[:, 1] + boxes[:, 3]) / 2)[:, None, None]
    rx = ((boxes[:, 2] - boxes[:, 0]) / 2).clamp(min=1)[:, None, None]
    ry = ((boxes[:, 3] - boxes[:, 1]) / 2).clamp(min=1)[:, None, None]
    return ((xs - cx) / rx) ** 2 + ((ys - cy) / ry) ** 2 <= 1


def time_fn(fn: Callable[[], Any], iters: int, warmup: int, device: torch.device) -> float:
    """Seconds per call of ``fn``: ``warmup`` untimed calls, then the mean of ``iters`` timed ones."""

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    for _ in range(warmup):
        fn()
    sync()
    start = time.perf_counter()
    for _ in range(iters):
        fn()
    sync()
    return (time.perf_counter() - start) / iters


def _autocast(device: torch.device, dtype: str) -> Any:
    if dtype == "fp32":
        return torch.autocast(device.type, enabled=False)
    return torch.autocast(device.type, dtype=torch.bfloat16 if dtype == "bf16" else torch.float16)


def _ours_inputs(inputs: list[dict], device: torch.device, train: bool) -> list[dict]:
    out = []
    for d in inputs:
        item = {"image": d["image"].to(device), "height": d["height"], "width": d["width"]}
        if train:
            item["instances"] = d["instances"].to(device)
        out.append(item)
    return out


def _tv_inputs(
    inputs: list[dict], device: torch.device, train: bool, input_format: str
) -> tuple[list[torch.Tensor], list[dict]]:
    # torchvision takes RGB floats in [0, 1]; our inputs are in the config's channel order.
    images = []
    for d in inputs:
        image = d["image"] if input_format == "RGB" else d["image"].flip(0)
        images.append(image.to(device).float().div_(255))
    targets = []
    if train:
        for d in inputs:
            inst = d["instances"]
            # torchvision reserves label 0 for background
            target = {"boxes": inst.gt_boxes.tensor.to(device), "labels": inst.gt_classes.to(device) + 1}
            if inst.has("gt_masks"):
                target["masks"] = inst.gt_masks.tensor.to(device, torch.uint8)
            targets.append(target)
    return images, targets


def build_torchvision_model(
    arch: str,
    num_classes: int,
    height: int,
    width: int,
    score_thresh: float | None,
    settings: dict[str, Any] | None = None,
):
    """torchvision's ``arch`` with random weights, set to keep ``height x width`` inputs unresized.

    Args:
        settings: extra builder keywords, e.g. from :func:`torchvision_settings`.
    """
    import torchvision

    if arch not in _TORCHVISION_ARCHS:
        raise ValueError(f"--torchvision {arch!r} is not supported; choose from {', '.join(_TORCHVISION_ARCHS)}")
    kwargs: dict[str, Any] = dict(
        weights=None,
        weights_backbone=None,
        num_classes=num_classes + 1,
        min_size=min(height, width),
        max_size=max(height, width),
    )
    kwargs.update(settings or {})
    if score_thresh is not None:
        kwargs["box_score_thresh"] = score_thresh
    return getattr(torchvision.models.detection, arch)(**kwargs)


def torchvision_settings(cfg: Any) -> dict[str, Any]:
    """Our config's proposal and RoI counts as torchvision builder keywords, so both do the same work."""
    rpn = cfg_get(cfg, "model.proposal_generator", None) or {}
    roi = cfg_get(cfg, "model.roi_heads", None) or {}
    pred = roi.get("box_predictor", None) or {}
    settings: dict[str, Any] = {}
    if "pre_nms_topk" in rpn:
        settings["rpn_pre_nms_top_n_train"], settings["rpn_pre_nms_top_n_test"] = map(int, rpn["pre_nms_topk"])
    if "post_nms_topk" in rpn:
        settings["rpn_post_nms_top_n_train"], settings["rpn_post_nms_top_n_test"] = map(int, rpn["post_nms_topk"])
    if "batch_size_per_image" in roi:
        settings["box_batch_size_per_image"] = int(roi["batch_size_per_image"])
    if "test_topk_per_image" in pred:
        settings["box_detections_per_img"] = int(pred["test_topk_per_image"])
    if "test_nms_thresh" in pred:
        settings["box_nms_thresh"] = float(pred["test_nms_thresh"])
    return settings


def match_backbone_training(model: torch.nn.Module, frozen_bn: bool, freeze_at: int) -> torch.nn.Module:
    """Give torchvision's ResNet-FPN model the same trainable backbone as ours.

    Built without weights, torchvision's builders switch to trainable BatchNorm and all five
    backbone stages trainable (and ignore ``trainable_backbone_layers``), which is more work per
    step than a detectron2-style config (FrozenBN, stem + res2 frozen). Timing the two as they come
    would flatter us, so the torchvision model is set up like ours: BN frozen where ours is, and
    the first ``freeze_at`` stages (1 = stem, 2 = stem + layer1, ...) without gradients.
    """
    from rcnnzoo.layers import FrozenBatchNorm2d

    body = getattr(getattr(model, "backbone", None), "body", None)
    if body is None or not hasattr(body, "layer1"):
        return model  # not a ResNet-FPN (e.g. MobileNet): left as built
    if frozen_bn:
        model.backbone.body = body = FrozenBatchNorm2d.convert_frozen_batchnorm(body)
    stages = [("conv1", "bn1"), ("layer1",), ("layer2",), ("layer3",), ("layer4",)]
    for names in stages[:freeze_at]:
        for name in names:
            for p in getattr(body, name).parameters():
                p.requires_grad_(False)
    return model


def _trainable(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    return [p for p in model.parameters() if p.requires_grad]


def _train_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, device, dtype, call) -> Callable:
    def step() -> None:
        with _autocast(device, dtype):
            losses = call()
        loss = sum(losses.values())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def _peak_memory_mb(device: torch.device, fn: Callable[[], Any]) -> float | None:
    if device.type != "cuda":
        return None
    torch.cuda.reset_peak_memory_stats(device)
    fn()
    torch.cuda.synchronize(device)
    return torch.cuda.max_memory_allocated(device) / 2**20


def load_config(config_file: str, opts: Sequence[str] = (), score_thresh: float | None = None) -> Any:
    """The config ``config_file`` with ``KEY=VALUE`` overrides and, if given, the test score threshold."""
    cfg = LazyConfig.load(resolve_config_path(config_file))
    cfg = LazyConfig.apply_overrides(cfg, list(opts))
    if score_thresh is not None:
        cfg.model.roi_heads.box_predictor.test_score_thresh = score_thresh
    return cfg


def build_ours(cfg: Any, device: torch.device) -> torch.nn.Module:
    """rcnnzoo's model of ``cfg`` with its random initialization (seed 0), on ``device``."""
    torch.manual_seed(0)
    return instantiate(cfg.model).to(device)


def share_weights(ours: torch.nn.Module, counterpart: torch.nn.Module, arch: str) -> bool:
    """Load ``counterpart``'s (torchvision's ``arch``) weights into ``ours``; False, with a warning,
    when they do not convert (the models then keep their own random weights)."""
    from rcnnzoo.model_zoo.converters import ConversionError, convert_torchvision_state_dict

    try:
        state = convert_torchvision_state_dict(counterpart.state_dict(), arch)
        device = next(ours.parameters()).device
        ours.load_state_dict({k: v.to(device) for k, v in state.items()}, strict=True)
    except (ConversionError, RuntimeError) as e:
        logger.warning(f"Could not give our model torchvision's {arch} weights ({e}); each keeps its own")
        return False
    return True


def inference_model(model: torch.nn.Module, optimize: bool, device: torch.device | None = None) -> torch.nn.Module:
    """The model our inference rows time: an optimized copy (as the Predictor runs it), or ``model``.

    ``device``: where the copy will run, if not where ``model`` is (it picks channels-last or not
    as :func:`rcnnzoo.modeling.optimize_for_inference` would there).
    """
    if not optimize:
        return model
    from rcnnzoo.modeling import optimize_for_inference

    channels_last = None if device is None else device.type == "cpu"
    return optimize_for_inference(copy.deepcopy(model), channels_last=channels_last)


def build_counterpart(
    cfg: Any, arch: str, height: int, width: int, score_thresh: float | None
) -> torch.nn.Module:
    """torchvision's ``arch`` doing the same work as ``cfg``'s model: same class, proposal and RoI
    counts, same frozen backbone parts (see :func:`match_backbone_training`); on the CPU."""
    num_classes = int(cfg.model.roi_heads.num_classes)
    model = build_torchvision_model(arch, num_classes, height, width, score_thresh, torchvision_settings(cfg))
    bottom_up = cfg_get(cfg, "model.backbone.bottom_up", None) or {}
    return match_backbone_training(
        model, frozen_bn=bottom_up.get("norm") == "FrozenBN", freeze_at=int(bottom_up.get("freeze_at", 0))
    )


def has_masks(cfg: Any) -> bool:
    """Whether ``cfg``'s model trains with ground-truth masks (a mask head on its RoI heads)."""
    return cfg_get(cfg, "model.roi_heads.mask_head", None) is not None


def run_benchmark(args: argparse.Namespace) -> dict[str, Any]:
    """Build the models, time what ``args`` asks for, return the results as a dict."""
    torch.set_num_threads(args.threads) if args.threads else None
    cfg = load_config(args.config_file, args.opts or [], args.score_thresh)
    device = resolve_device(args.device)
    ours = build_ours(cfg, device)
    num_classes = int(cfg.model.roi_heads.num_classes)
    input_format = getattr(ours, "input_format", "BGR")
    height, width = args.image_size
    models: dict[str, torch.nn.Module] = {"rcnnzoo": ours}
    if args.torchvision:
        tv_model = build_counterpart(cfg, args.torchvision, height, width, args.score_thresh)
        share_weights(ours, tv_model, args.torchvision)
        models["torchvision"] = tv_model.to(device)
    # copied before any training step changes the weights, so both models infer with the same ones
    optimized = inference_model(ours, args.optimize) if args.task != "train" else None

    with_masks = has_masks(cfg)
    results = []
    tasks = ("train", "inference") if args.task == "all" else (args.task,)
    for task in tasks:
        for dtype in args.dtypes:
            for batch in args.batch_sizes[task]:
                inputs = make_inputs(batch, height, width, num_classes, with_masks=with_masks)
                row: dict[str, Any] = {"task": task, "batch_size": batch, "dtype": dtype}
                for name, model in models.items():
                    if name == "rcnnzoo" and task == "inference":
                        model = optimized
                    fn = make_model_fn(name, model, task, inputs, device, dtype, input_format)
                    seconds = time_fn(fn, args.iters, args.warmup, device)
                    if task == "train":
                        row[f"{name}_images_per_s"] = batch / seconds
                        row[f"{name}_peak_mem_mb"] = _peak_memory_mb(device, fn)
                    else:
                        row[f"{name}_ms_per_image"] = 1000 * seconds / batch
                if task == "inference":
                    backbone = make_backbone_fn(optimized, inputs, device, dtype)
                    row["rcnnzoo_backbone_ms_per_image"] = 1000 * time_fn(
                        backbone, args.iters, args.warmup, device
                    ) / batch
                if "torchvision" in models:
                    if task == "train":
                        row["speedup"] = row["rcnnzoo_images_per_s"] / row["torchvision_images_per_s"]
                    else:
                        row["speedup"] = row["torchvision_ms_per_image"] / row["rcnnzoo_ms_per_image"]
                results.append(row)
                print(_format_row(row), flush=True)
    return {
        "config": args.config_file,
        "overrides": list(args.opts or []),
        "torchvision_arch": args.torchvision,
        "optimized_for_inference": args.optimize,
        "image_size": [height, width],
        "score_thresh": args.score_thresh,
        "iters": args.iters,
        "warmup": args.warmup,
        "device": device_name(device),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "results": results,
    }


def make_model_fn(name, model, task, inputs, device, dtype, input_format) -> Callable[[], Any]:
    """One training step (SGD) or one inference call of ``model`` on ``inputs``, as a function to time.

    Args:
        name: "rcnnzoo" (our input format) or "torchvision" (float RGB tensors and target dicts,
            converted here, before timing).
        task: "train" or "inference".
        inputs: :func:`make_inputs`' output, on the CPU.
    """
    train = task == "train"
    model.train(train)
    if name == "rcnnzoo":
        batch = _ours_inputs(inputs, device, train)
        if train:
            opt = torch.optim.SGD(_trainable(model), lr=1e-4, momentum=0.9)
            return _train_step(model, opt, device, dtype, lambda: model(batch))

        def infer() -> Any:
            with torch.no_grad(), _autocast(device, dtype):
                return model(batch)

        return _with_mode(model, False, infer)
    images, targets = _tv_inputs(inputs, device, train, input_format)
    if train:
        opt = torch.optim.SGD(_trainable(model), lr=1e-4, momentum=0.9)
        return _with_mode(model, True, _train_step(model, opt, device, dtype, lambda: model(images, targets)))

    def tv_infer() -> Any:
        with torch.no_grad(), _autocast(device, dtype):
            return model(images)

    return _with_mode(model, False, tv_infer)


def _with_mode(model: torch.nn.Module, training: bool, fn: Callable[[], Any]) -> Callable[[], Any]:
    # Models are shared across rows; each call sets the mode it needs.
    def call() -> Any:
        model.train(training)
        return fn()

    return call


def make_backbone_fn(model, inputs, device, dtype) -> Callable[[], Any]:
    """Our model's preprocessing and backbone alone, in inference mode, as a function to time."""
    batch = _ours_inputs(inputs, device, False)

    def backbone() -> Any:
        model.eval()
        with torch.no_grad(), _autocast(device, dtype):
            images = model.preprocess_image(batch)
            return model.backbone(images.tensor)

    return backbone


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({cpu_name()}), {torch.get_num_threads()} threads"


def cpu_name() -> str:
    """The CPU's model name (from /proc/cpuinfo on Linux), else what :mod:`platform` knows."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _format_row(row: dict[str, Any]) -> str:
    parts = [f"{row['task']:<9} batch {row['batch_size']:<2} {row['dtype']:<4}"]
    for key, value in row.items():
        if key in ("task", "batch_size", "dtype") or value is None:
            continue
        parts.append(f"{key}={value:.2f}" if isinstance(value, float) else f"{key}={value}")
    return "  ".join(parts)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config-file", help="config path or shipped config name (not with --suite)")
    parser.add_argument(
        "--suite",
        choices=("targets",),
        default=None,
        help="instead of one config: every speed target of issue #7 beside torchvision, as one table "
        "(see rcnnzoo/tools/benchmark_suite.py); uses --image-size, --iters, --warmup, --device, "
        "--threads (CPU rows; default 2) and --json",
    )
    parser.add_argument(
        "--suite-only",
        nargs="+",
        default=None,
        metavar="ID",
        help="with --suite: run only the rows whose id starts with one of these (e.g. cpu_inference_r50, "
        "gpu_train); the others are reported as not selected",
    )
    parser.add_argument("--task", choices=("train", "inference", "all"), default="all")
    parser.add_argument(
        "--torchvision", default=None, metavar="ARCH", help=f"also time torchvision's ARCH: {_TORCHVISION_ARCHS}"
    )
    parser.add_argument("--image-size", type=int, nargs=2, default=(800, 1216), metavar=("H", "W"))
    parser.add_argument("--train-batch-sizes", type=int, nargs="+", default=[2])
    parser.add_argument("--inference-batch-sizes", type=int, nargs="+", default=[1])
    parser.add_argument("--dtypes", nargs="+", choices=("fp32", "bf16", "fp16"), default=["fp32"])
    parser.add_argument("--score-thresh", type=float, default=None, help="detection score threshold for both")
    parser.add_argument("--iters", type=int, default=10, help="timed iterations per measurement")
    parser.add_argument("--warmup", type=int, default=3, help="untimed iterations before timing")
    parser.add_argument("--device", default="auto", help="'auto', 'cpu', 'cuda', 'cuda:1', ...")
    parser.add_argument(
        "--threads", type=int, default=0, help="torch CPU threads (0: torch's default; with --suite, 2)"
    )
    parser.add_argument(
        "--no-optimize",
        dest="optimize",
        action="store_false",
        help="time our inference with the model as built, not optimized for inference (folded norms, "
        "channels-last) as the Predictor runs it",
    )
    parser.add_argument("--json", default="", metavar="FILE", help="also write the results as JSON")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides KEY=VALUE")
    return parser


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.suite:
        from rcnnzoo.tools.benchmark_suite import run_suite  # imports this module

        if args.config_file or args.torchvision or args.opts:
            parser.error("--suite picks its own configs: no --config-file, --torchvision or overrides")
        report = run_suite(args)
    elif args.suite_only:
        parser.error("--suite-only goes with --suite")
    elif not args.config_file:
        parser.error("--config-file is required (or --suite)")
    else:
        args.batch_sizes = {"train": args.train_batch_sizes, "inference": args.inference_batch_sizes}
        report = run_benchmark(args)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(report, f, indent=2)
    return report


if __name__ == "__main__":
    main()
