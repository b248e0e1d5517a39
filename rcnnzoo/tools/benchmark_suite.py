"""Every speed target of issue #7 in one run, beside torchvision: ``tools/benchmark.py --suite targets``.

Each row is one target in one setting; its ratio is computed the same way for every row of a kind:

==================================  =============================  ==========================  ======
row ids                             figure                         ratio                       bar
==================================  =============================  ==========================  ======
``gpu_train_faster_rcnn_r50_*``     training images/s, batch 8     their time / our time       >= 1.5
``gpu_train_mask_rcnn_r50_*``       training images/s, batch 8     their time / our time       >= 3
``gpu_memory_*``                    peak GPU memory in training    our peak / their peak       <= 1
``gpu_inference_vs_torchvision_*``  ms per image, score thresh. 0  their time / our time       >= 3
``gpu_inference_vs_backbone_*``     ms per image, score thresh. 0  our time / our backbone's   <= 2
``cpu_inference_r50``,              ms per image, batch 1, fp32,   their time / our time       >= 1.5
``cpu_inference_mobilenet_v3``      2 threads
``cpu_train_shapes_tiny``           s per training iteration       none (information only)
==================================  =============================  ==========================  ======

Training steps are SGD for every model, the Shapes one included (its config trains with AdamW).

The models are the ``configs/*/torchvision/`` configs, beside torchvision's builder of the same
architecture, set up as :mod:`rcnnzoo.tools.benchmark` does (same inputs, same counts, same frozen
backbone parts); images are ``--image-size`` (default 800 x 1216), except the Shapes row's 256 x 256.

How the run is organized:

* every measurement is timed once and serves each row that needs it: one series of training steps
  gives both the speed and the peak-memory rows;
* per architecture and device, our model is built, measured in every setting, and freed before
  torchvision's is built, so only one model is on the GPU while its peak memory is measured
  (``torch.cuda.max_memory_allocated`` since a reset just before its warm-up steps: weights,
  gradients, SGD momentum, activations, and the inputs as each model takes them, uint8 images for
  ours, float ones for torchvision's);
* GPU rows run first, with torch's default CPU threads; CPU rows run with ``--threads`` (default 2);
* without a CUDA device the GPU rows are reported as skipped, with the reason; a row whose config
  is missing or whose measurement fails is reported, not fatal, so one bad row never costs a long run.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import platform
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch

from rcnnzoo.config import resolve_config_path
from rcnnzoo.engine.defaults import cfg_get
from rcnnzoo.tools import benchmark

__all__ = ["Measurement", "Setting", "Target", "format_table", "run_suite", "suite_targets", "target_row"]

logger = logging.getLogger("rcnnzoo.benchmark")

# (model name, config, torchvision builder of the same architecture)
FASTER_R50 = (
    "Faster R-CNN R50-FPN",
    "COCO-Detection/torchvision/fasterrcnn_resnet50_fpn.py",
    "fasterrcnn_resnet50_fpn",
)
MASK_R50 = (
    "Mask R-CNN R50-FPN",
    "COCO-InstanceSegmentation/torchvision/maskrcnn_resnet50_fpn.py",
    "maskrcnn_resnet50_fpn",
)
MOBILENET_V3 = (
    "Faster R-CNN MobileNetV3-Large-FPN",
    "COCO-Detection/torchvision/fasterrcnn_mobilenet_v3_large_fpn.py",
    "fasterrcnn_mobilenet_v3_large_fpn",
)
SHAPES_TINY = ("Faster R-CNN TinyNet-FPN (Shapes)", "Shapes/faster_rcnn_tiny_fpn.py", None)

# Inference rows run at the score threshold 0: every image keeps its top detections.
SCORE_THRESH = 0.0
DEFAULT_CPU_THREADS = 2

# kind of row -> the measurements it needs: "rcnnzoo" and "torchvision" time (and, when training on
# the GPU, the peak memory of) the whole model, "backbone" our preprocessing + backbone alone
_NEEDS = {
    "speed": ("rcnnzoo", "torchvision"),
    "memory": ("rcnnzoo", "torchvision"),
    "backbone": ("rcnnzoo", "backbone"),
    "info": ("rcnnzoo",),
}


@dataclass(frozen=True)
class Setting:
    """One way of running a model: which one, doing what, on which device."""

    model: str
    config: str
    arch: str | None  # torchvision's builder of the same architecture
    task: str  # "train" or "inference"
    batch: int
    dtype: str  # "fp32" or "bf16" (autocast)
    device: str  # "cuda" or "cpu"
    image_size: tuple[int, int] | None = None  # (H, W); None: the suite's --image-size


@dataclass(frozen=True)
class Target:
    """One row of the table: a bar that ``kind``'s ratio must meet in ``setting``."""

    id: str
    what: str
    setting: Setting
    kind: str  # a key of _NEEDS
    bar: float | None = None


@dataclass
class Measurement:
    seconds: float | None = None  # per call: one training step or one inference call on the batch
    peak_mem_mib: float | None = None  # GPU training only
    error: str | None = None


def suite_targets() -> list[Target]:
    """Every row of the suite, in table order."""
    rows = []
    trained = (("faster_rcnn_r50", FASTER_R50, 1.5), ("mask_rcnn_r50", MASK_R50, 3.0))
    for key, model, bar in trained:
        for dtype in ("fp32", "bf16"):
            setting = Setting(*model, "train", 8, dtype, "cuda")
            rows.append(
                Target(f"gpu_train_{key}_b8_{dtype}", "training speed vs torchvision", setting, "speed", bar)
            )
    for key, model, _ in trained:
        for dtype in ("fp32", "bf16"):
            setting = Setting(*model, "train", 8, dtype, "cuda")
            what = "peak GPU memory in training vs torchvision"
            rows.append(Target(f"gpu_memory_{key}_b8_{dtype}", what, setting, "memory", 1.0))
    for batch in (1, 8):
        for dtype in ("fp32", "bf16"):
            setting = Setting(*FASTER_R50, "inference", batch, dtype, "cuda")
            suffix = f"b{batch}_{dtype}"
            what = "inference speed vs torchvision"
            rows.append(Target(f"gpu_inference_vs_torchvision_{suffix}", what, setting, "speed", 3.0))
            what = "inference latency vs our backbone alone"
            rows.append(Target(f"gpu_inference_vs_backbone_{suffix}", what, setting, "backbone", 2.0))
    for key, model in (("r50", FASTER_R50), ("mobilenet_v3", MOBILENET_V3)):
        setting = Setting(*model, "inference", 1, "fp32", "cpu")
        rows.append(
            Target(f"cpu_inference_{key}", "CPU inference speed vs torchvision", setting, "speed", 1.5)
        )
    setting = Setting(*SHAPES_TINY, "train", 8, "fp32", "cpu", image_size=(256, 256))
    rows.append(Target("cpu_train_shapes_tiny", "CPU training time (information)", setting, "info"))
    return rows


def run_suite(args: Any) -> dict[str, Any]:
    """Measure the rows of :func:`suite_targets` that ``args`` selects; print the table, return the report.

    Args:
        args: :func:`rcnnzoo.tools.benchmark.build_parser`'s namespace: ``image_size``, ``iters``,
            ``warmup``, ``device``, ``threads``, ``suite_only``, ``json`` are read.
    """
    size = tuple(args.image_size)
    threads = args.threads or DEFAULT_CPU_THREADS
    gpu, no_gpu = _gpu_device(args.device)
    targets = suite_targets()
    skipped = {t.id: _skip_reason(t, args.suite_only, no_gpu) for t in targets}
    runnable = [t for t in targets if skipped[t.id] is None]
    optimize = getattr(args, "optimize", True)
    measured = _measure_all(runnable, size, gpu, threads, args.iters, args.warmup, optimize)
    rows = [target_row(t, skipped[t.id], measured, size) for t in targets]
    report = {
        "suite": "targets",
        "machine": {
            "gpu": torch.cuda.get_device_name(gpu) if gpu is not None else None,
            "cpu": benchmark.cpu_name(),
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
        },
        "cpu_threads": threads,
        "torch": torch.__version__,
        "torchvision": _torchvision_version(),
        "image_size": list(size),
        "score_thresh": SCORE_THRESH,
        "optimized_for_inference": optimize,
        "iters": args.iters,
        "warmup": args.warmup,
        "rows": rows,
    }
    print(format_table(report), flush=True)
    return report


def _gpu_device(name: str | None) -> tuple[torch.device | None, str | None]:
    """The GPU the GPU rows run on, or None and why not."""
    if name in (None, "", "auto"):
        name = "cuda"
    device = torch.device(name)
    if device.type != "cuda":
        return None, f"no CUDA device (--device {name})"
    if not torch.cuda.is_available():
        return None, "no CUDA device"
    return device, None


def _skip_reason(target: Target, only: list[str] | None, no_gpu: str | None) -> str | None:
    if only and not any(target.id.startswith(prefix) for prefix in only):
        return "not selected (--suite-only)"
    if target.setting.device == "cuda" and no_gpu:
        return no_gpu
    try:
        resolve_config_path(target.setting.config)
    except FileNotFoundError:
        return f"config not found: {target.setting.config}"
    return None


# (who, setting): who is "rcnnzoo", "torchvision" or "backbone"
_Job = tuple[str, Setting]


def _measure_all(
    targets: list[Target],
    size: tuple[int, int],
    gpu: torch.device | None,
    threads: int,
    iters: int,
    warmup: int,
    optimize: bool = True,
) -> dict[_Job, Measurement]:
    """Every measurement ``targets`` need, each once; one model on its device at a time."""
    # (config, arch, device, image size) -> model built ("rcnnzoo" or "torchvision") -> its jobs;
    # dicts as ordered sets, so measurements run in table order
    groups: dict[tuple, dict[str, dict[_Job, None]]] = {}
    for t in targets:
        s = t.setting
        key = (s.config, s.arch, s.device, s.image_size or size)
        for who in _NEEDS[t.kind]:
            built = "torchvision" if who == "torchvision" else "rcnnzoo"
            groups.setdefault(key, {}).setdefault(built, {})[(who, s)] = None
    results: dict[_Job, Measurement] = {}
    # GPU groups first: the CPU rows change the thread count
    for (config, arch, device_type, (height, width)), by_model in sorted(
        groups.items(), key=lambda g: g[0][2] != "cuda"
    ):
        device = gpu if device_type == "cuda" else torch.device("cpu")
        with _cpu_threads(threads if device_type == "cpu" else None):
            counterpart = None  # torchvision's model, on the CPU until its turn; ours takes its weights
            for built, jobs in by_model.items():
                try:
                    cfg = benchmark.load_config(config, score_thresh=SCORE_THRESH)
                    if counterpart is None and arch is not None:
                        counterpart = benchmark.build_counterpart(cfg, arch, height, width, SCORE_THRESH)
                    if built == "rcnnzoo":
                        model = benchmark.build_ours(cfg, torch.device("cpu"))
                        if counterpart is not None:
                            benchmark.share_weights(model, counterpart, arch)
                        # the inference copy stays on the CPU (out of the training rows' GPU memory)
                        # until an inference row needs it
                        optimized = _inference_copy(model, jobs, optimize, device)
                        model = model.to(device)
                    else:
                        # dropped here, so it leaves the GPU with ``model`` below
                        model, optimized, counterpart = counterpart.to(device), None, None
                except Exception as e:  # reported in the rows that needed this model
                    logger.warning("building %s for %s failed", built, config, exc_info=True)
                    results.update((job, Measurement(error=_describe(e))) for job in jobs)
                    continue
                for who, setting in jobs:
                    runs = model
                    if optimized is not None and setting.task == "inference":
                        runs = optimized = optimized.to(device)
                    m = _measure(who, setting, runs, cfg, device, height, width, iters, warmup)
                    results[(who, setting)] = m
                    figure = f"{m.seconds:.4f} s per call" if m.error is None else m.error
                    print(
                        f"# {device_type} {setting.model}, {who}, {setting.task} batch {setting.batch} "
                        f"{setting.dtype}: {figure}",
                        flush=True,
                    )
                del model, optimized
                _release(device)
    return results


def _inference_copy(model: torch.nn.Module, jobs, optimize: bool, device: torch.device) -> torch.nn.Module | None:
    """Our model as inference rows time it (see :func:`benchmark.inference_model`), if any job infers."""
    if not any(setting.task == "inference" for _, setting in jobs):
        return None
    return benchmark.inference_model(model, optimize, device)


def _measure(who, setting, model, cfg, device, height, width, iters, warmup) -> Measurement:
    train = setting.task == "train"
    num_classes = int(cfg.model.roi_heads.num_classes)
    inputs = benchmark.make_inputs(
        setting.batch, height, width, num_classes, with_masks=train and benchmark.has_masks(cfg)
    )
    try:
        if who == "backbone":
            fn = benchmark.make_backbone_fn(model, inputs, device, setting.dtype)
        else:
            input_format = cfg_get(cfg, "model.input_format", "BGR")
            fn = benchmark.make_model_fn(
                who, model, setting.task, inputs, device, setting.dtype, input_format
            )
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        seconds = benchmark.time_fn(fn, iters, warmup, device)
        peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" and train else None
        return Measurement(seconds, peak)
    except Exception as e:  # e.g. out of memory: reported in its rows
        logger.warning("measuring %s on %s failed", who, setting, exc_info=True)
        return Measurement(error=_describe(e))
    finally:
        # the next measurement starts without this one's gradients and optimizer state
        fn = None
        model.zero_grad(set_to_none=True)
        _release(device)


def target_row(
    target: Target, skipped: str | None, measured: dict[_Job, Measurement], size: tuple[int, int]
) -> dict:
    """``target``'s row of the report: its setting, our figure, the reference figure, ratio, bar, met.

    Args:
        skipped: why the row did not run, or None.
        measured: ``(who, setting) -> Measurement`` for who in "rcnnzoo", "torchvision", "backbone".
        size: the suite's image size (H, W), for settings without their own.
    """
    s = target.setting
    height, width = s.image_size or size
    kind = target.kind
    row: dict[str, Any] = {
        "id": target.id,
        "target": target.what,
        "model": s.model,
        "config": s.config,
        "torchvision_arch": s.arch,
        "task": s.task,
        "batch_size": s.batch,
        "dtype": s.dtype,
        "device": s.device,
        "image_size": [height, width],
        "setting": f"{s.model}, {s.task}, batch {s.batch}, {s.dtype}, {height}x{width}, {s.device}",
        "unit": None,
        "ours": None,
        "reference": None,
        "reference_is": {"backbone": "rcnnzoo backbone alone", "info": None}.get(kind, "torchvision"),
        "ratio": None,
        "ratio_is": None,
        "bar_op": "<=" if kind in ("memory", "backbone") else (">=" if target.bar is not None else None),
        "bar": target.bar,
        "met": None,
        "status": "skipped" if skipped else "measured",
        "reason": skipped,
    }
    if skipped:
        return row
    found = {who: measured[(who, s)] for who in _NEEDS[kind]}
    errors = [f"{who}: {m.error}" for who, m in found.items() if m.error]
    if errors:
        row.update(status="failed", reason="; ".join(errors))
        return row
    ours = found["rcnnzoo"]
    if kind == "info":
        row.update(unit="s/iter", ours=ours.seconds)
    elif kind == "memory":
        theirs = found["torchvision"]
        row.update(unit="MiB", ours=ours.peak_mem_mib, reference=theirs.peak_mem_mib)
        row.update(ratio=ours.peak_mem_mib / theirs.peak_mem_mib, ratio_is="our peak / torchvision's peak")
    elif kind == "backbone":
        backbone = found["backbone"]
        row.update(
            unit="ms/image", ours=1000 * ours.seconds / s.batch, reference=1000 * backbone.seconds / s.batch
        )
        row.update(ratio=ours.seconds / backbone.seconds, ratio_is="our time / our backbone's time")
    else:  # speed: a speedup, their time over ours, shown as images/s (training) or ms per image
        theirs = found["torchvision"]
        if s.task == "train":
            row.update(unit="images/s", ours=s.batch / ours.seconds, reference=s.batch / theirs.seconds)
        else:
            row.update(
                unit="ms/image", ours=1000 * ours.seconds / s.batch, reference=1000 * theirs.seconds / s.batch
            )
        row.update(ratio=theirs.seconds / ours.seconds, ratio_is="torchvision's time / our time")
    if target.bar is not None:
        ratio = row["ratio"]
        row["met"] = bool(ratio <= target.bar if row["bar_op"] == "<=" else ratio >= target.bar)
    return row


def format_table(report: dict[str, Any]) -> str:
    """The report as a Markdown table, headed by the machine it ran on."""
    machine = report["machine"]
    lines = [
        f"GPU: {machine['gpu'] or 'none'}; CPU: {machine['cpu']} ({machine['cpu_count']} cores), CPU rows on "
        f"{report['cpu_threads']} threads; torch {report['torch']}, torchvision {report['torchvision']}; "
        f"images {report['image_size'][0]}x{report['image_size'][1]} unless stated, score threshold "
        f"{report['score_thresh']:g}, {report['warmup']} warm-up + {report['iters']} timed iterations; "
        f"same weights in both models; our inference "
        + ("optimized (folded norms, channels-last)." if report.get("optimized_for_inference", True) else "as built."),
        "",
        "| id | target | setting | ours | torchvision | ratio | bar | met |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in report["rows"]:
        unit = row["unit"] or ""
        ours = f"{_number(row['ours'])} {unit}" if row["ours"] is not None else ""
        reference = f"{_number(row['reference'])} {unit}" if row["reference"] is not None else ""
        if reference and row["reference_is"] != "torchvision":
            reference += f" ({row['reference_is']})"
        ratio = f"{row['ratio']:.2f}" if row["ratio"] is not None else ""
        bar = f"{row['bar_op']} {row['bar']:g}" if row["bar"] is not None else "(information)"
        if row["status"] != "measured":
            met = f"{row['status']}: {row['reason']}"
        else:
            met = {True: "yes", False: "no", None: "-"}[row["met"]]
        cells = (row["id"], row["target"], row["setting"], ours, reference, ratio, bar, met)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _number(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"


def _describe(error: Exception) -> str:
    first_line = (str(error).strip().splitlines() or [""])[0]
    return f"{type(error).__name__}: {first_line[:200]}"


@contextlib.contextmanager
def _cpu_threads(n: int | None) -> Iterator[None]:
    if n is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _release(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def _torchvision_version() -> str | None:
    try:
        import torchvision
    except ImportError:
        return None
    return torchvision.__version__
