"""Convert another project's checkpoint, once, into an rcnnzoo ``.pth``.

Detectors (the weights of a whole model; verified by loading them strictly into the arch's config)::

    python tools/convert_checkpoint.py fasterrcnn_resnet50_fpn_coco-258fb6c6.pth tv_frcnn.pth \\
        --source torchvision --arch fasterrcnn_resnet50_fpn
    python tools/convert_checkpoint.py model_final_b275ba.pkl d2_frcnn.pth \\
        --source detectron2 --arch faster_rcnn_R_50_FPN_1x
    python tools/train_net.py --eval-only \\
        --config-file COCO-Detection/faster_rcnn_R_50_FPN_1x.py train.init_checkpoint=d2_frcnn.pth

ImageNet backbones (to train a detector from; the rest of the detector starts from its
initialization, which :class:`rcnnzoo.checkpoint.Checkpointer` reports as missing keys)::

    python tools/convert_checkpoint.py R-50.pkl msra_r50.pth --source detectron2 --arch R-50
    python tools/convert_checkpoint.py resnet50-0676ba61.pth tv_r50.pth --source torchvision \\
        --arch resnet50 --config PascalVOC-Detection/faster_rcnn_R_50_FPN.py
    python tools/train_net.py --config-file COCO-Detection/faster_rcnn_R_50_FPN_1x.py \\
        train.init_checkpoint=msra_r50.pth

An ImageNet file holds only the backbone, named for where a detector has it. Without ``--config``
that is the shipped configs' layout (ResNet/MobileNetV3 at ``backbone.bottom_up``, VGG16 at
``backbone.features`` with fc6/fc7 in ``roi_heads.box_head.classifier``); with ``--config`` it is
found in that config's model (e.g. a C4 model's ``backbone`` and its box head's ``res5``), and the
tool also warns when the model's input settings (channel order, pixel mean/std, where a ResNet's
stride sits) differ from those the ImageNet network was trained with.

``IN`` may be a local path, a ``file://`` or an ``http(s)://`` URL (fetched into the rcnnzoo
cache, checked against ``--sha256`` when given). torchvision files are read with
``torch.load(weights_only=True)``, detectron2 ``.pkl`` files with
:func:`rcnnzoo.checkpoint.load_pickle`: either way tensors/arrays and plain containers only, no
code from the file runs. The output is written atomically as ``{"model": state_dict,
"conversion": {...}}``, which :class:`rcnnzoo.checkpoint.Checkpointer` loads (also weights-only).
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from rcnnzoo.checkpoint import CheckpointError, atomic_write
from rcnnzoo.model_zoo.converters import (
    DETECTRON2_ARCHS,
    IMAGENET_BACKBONES,
    MSRA_IMAGENET_ARCHS,
    TORCHVISION_ARCHS,
    TORCHVISION_IMAGENET_ARCHS,
    build_imagenet_backbone,
    convention_mismatches,
    convert_detectron2_state_dict,
    convert_torchvision_state_dict,
    msra_backbone_weights,
    place_backbone_weights,
    read_detectron2_pkl,
    torchvision_backbone_weights,
)
from rcnnzoo.model_zoo.download import download

__all__ = ["SOURCE_ARCHS", "build_parser", "convert_checkpoint", "main"]

logger = logging.getLogger("rcnnzoo.convert_checkpoint")


def _source_archs() -> dict[str, list[str]]:
    """``--source`` -> the ``--arch`` names it supports (detectors first, then ImageNet backbones)."""
    return {
        "torchvision": [*TORCHVISION_ARCHS, *TORCHVISION_IMAGENET_ARCHS],
        "detectron2": [*DETECTRON2_ARCHS, *MSRA_IMAGENET_ARCHS],
    }


SOURCE_ARCHS = _source_archs()
"""``--source`` -> supported ``--arch`` names, as of import (the converter tables are the truth)."""


def _read_state_dict(path: str) -> dict[str, torch.Tensor]:
    """The weights in ``path``: a bare state dict (torchvision's published files) or ``{"model": ...}``
    (torchvision's reference training scripts)."""
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # unpickling errors of every kind: name the file
        hint = " (a detectron2 .pkl? use --source detectron2)" if path.endswith(".pkl") else ""
        raise CheckpointError(f"Cannot read {path} as a weights-only checkpoint{hint}: {e}") from e
    if isinstance(data, Mapping) and isinstance(data.get("model"), Mapping):
        data = data["model"]
    if not isinstance(data, Mapping) or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise CheckpointError(f"{path} does not hold a state dict (a mapping of names to tensors)")
    return dict(data)


def _build_model(config: str) -> nn.Module:
    from rcnnzoo.config import instantiate
    from rcnnzoo.model_zoo import get_config

    return instantiate(get_config(config).model)


def _check_fits(state_dict: dict[str, torch.Tensor], config: str, convention_of: str | None = None) -> None:
    """Load ``state_dict`` strictly into the model of ``config``; raise if any key or shape differs,
    or (with ``convention_of``, an ImageNet arch) if the model's input settings differ from it."""
    model = _build_model(config)
    try:
        model.load_state_dict(state_dict, strict=True)
    except RuntimeError as e:
        raise CheckpointError(f"The converted weights do not fit {config}: {e}") from e
    problems = convention_mismatches(model, convention_of) if convention_of else []
    if problems:
        raise CheckpointError(
            f"{config} builds its model differently from the one these weights were trained in; it "
            f"would load them and compute something else. Needed: {'; '.join(problems)}"
        )


def _prefix_groups(keys: Sequence[str], depth: int = 2) -> list[str]:
    """``["backbone.lateral_convs", "roi_heads.box_head", ...]``: ``keys`` summarized by their first components."""
    return sorted({".".join(k.split(".")[:depth]) for k in keys})


def _convert_detector(weights: Mapping[str, Any], source: str, arch: str, config: str | None, verify: bool):
    if source == "torchvision":
        converted, config = convert_torchvision_state_dict(weights, arch), config or TORCHVISION_ARCHS[arch]
        convention_of = None  # the torchvision configs are made for those weights
    else:
        converted, config = convert_detectron2_state_dict(weights, arch), config or DETECTRON2_ARCHS[arch]
        convention_of = "R-50"  # detectron2's R50 detectors were trained from MSRA's R-50, in its settings
    if verify:
        _check_fits(converted, config, convention_of)
    return converted, {"kind": "detector", "config": config}


def _convert_backbone(backbone: dict[str, torch.Tensor], arch: str, config: str | None, verify: bool):
    if verify:
        try:
            build_imagenet_backbone(arch).load_state_dict(backbone, strict=True)
        except RuntimeError as e:
            raise CheckpointError(f"The converted weights are not those of {arch}: {e}") from e
    model = _build_model(config) if config else None
    placed = place_backbone_weights(backbone, arch, model)
    for key, reason in placed.not_placed:
        logger.warning("Not placed: %s (%s)", key, reason)
    spec = IMAGENET_BACKBONES[arch]
    record: dict[str, Any] = {
        "kind": "imagenet_backbone",
        "config": config,
        "placement": placed.prefixes,
        "not_placed": [k for k, _ in placed.not_placed],
        "expects": {
            "input_format": spec.input_format,
            "pixel_mean": list(spec.pixel_mean),
            "pixel_std": list(spec.pixel_std),
            "stride_in_1x1": spec.stride_in_1x1,
        },
    }
    if model is None:
        logger.info(
            "Placed %s as in the shipped configs (%s); the rest of a detector starts from its "
            "initialization. Pass --config to place and check it for a given config.",
            arch,
            ", ".join(f"{k or '<all>'} -> {v}" for k, v in placed.prefixes.items()),
        )
        return placed.state_dict, record
    fresh = [k for k in model.state_dict() if k not in placed.state_dict]
    logger.info(
        "In %s, %d tensors come from %s; %d are newly initialised: %s",
        config,
        len(placed.state_dict),
        arch,
        len(fresh),
        ", ".join(_prefix_groups(fresh)),
    )
    for problem in convention_mismatches(model, arch):
        logger.warning("%s was trained with different input settings; set %s", arch, problem)
    return placed.state_dict, record


def convert_checkpoint(
    src: str,
    dst: str,
    *,
    source: str,
    arch: str,
    config: str | None = None,
    sha256: str | None = None,
    verify: bool = True,
) -> dict[str, Any]:
    """Convert ``src`` (path or URL) to an rcnnzoo checkpoint at ``dst``.

    Args:
        source: ``"torchvision"`` or ``"detectron2"``.
        arch: a name of :data:`SOURCE_ARCHS` ``[source]``: a detector (converted whole) or an
            ImageNet network (converted as a detector's backbone).
        config: the shipped config (name as for ``get_config``) whose model the weights are for;
            by default the detector arch's own config, and for ImageNet archs the shipped layout
            without a check against a model.
        verify: load the result into the model it is for (strictly for detectors; the backbone
            module, and the config's model when given, for ImageNet archs).
    Returns:
        the ``"conversion"`` record written with the weights (source, arch, input, kind, config, and
        for ImageNet archs the placement and the input settings the weights expect).
    Raises:
        ValueError: an unknown source or an arch of another source; ConversionError: keys the
        converter does not know; UnsafePickleError: a ``.pkl`` that references code (none of it
        ran); CheckpointError: unreadable input or weights that do not fit; DownloadError: a URL
        that cannot be fetched.
    """
    archs = _source_archs()
    if source not in archs:
        raise ValueError(f"--source {source!r} is not supported; supported: {', '.join(archs)}")
    if arch not in archs[source]:
        raise ValueError(
            f"--arch {arch!r} is not a {source} arch; {source} archs: {', '.join(archs[source])}"
        )
    local = download(src, sha256)
    if source == "torchvision":
        state = _read_state_dict(local)
        if arch in TORCHVISION_ARCHS:
            converted, extra = _convert_detector(state, source, arch, config, verify)
        else:
            converted, extra = _convert_backbone(
                torchvision_backbone_weights(state, arch), arch, config, verify
            )
    else:
        weights, layout = read_detectron2_pkl(local)
        expected_layout = "detectron2" if arch in DETECTRON2_ARCHS else "caffe2"
        if layout != expected_layout:
            what = {"detectron2": "a trained detectron2 model", "caffe2": "a Caffe2 blob dict (ImageNet)"}
            raise CheckpointError(
                f"{src} is {what[layout]}, not {what[expected_layout]} as --arch {arch} needs"
            )
        if arch in DETECTRON2_ARCHS:
            converted, extra = _convert_detector(weights, source, arch, config, verify)
        else:
            converted, extra = _convert_backbone(msra_backbone_weights(weights, arch), arch, config, verify)
    record = {"source": source, "arch": arch, "input": src, **extra}
    atomic_write(dst, lambda f: torch.save({"model": converted, "conversion": record}, f))
    logger.info("Wrote %d tensors (%s %s) to %s", len(converted), source, arch, dst)
    return record


def build_parser() -> argparse.ArgumentParser:
    archs = _source_archs()
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("input", metavar="IN", help="checkpoint path, file:// or http(s):// URL")
    parser.add_argument("output", metavar="OUT", help="the rcnnzoo .pth to write")
    parser.add_argument("--source", choices=sorted(archs), required=True, help="the checkpoint's project")
    parser.add_argument(
        "--arch",
        required=True,
        metavar="ARCH",
        help="the model: " + "; ".join(f"{s}: {', '.join(a)}" for s, a in archs.items()),
    )
    parser.add_argument(
        "--config",
        default=None,
        help="the config the weights are for (default: a detector arch's own config; for an ImageNet "
        "arch, the shipped layout, unchecked)",
    )
    parser.add_argument("--sha256", default=None, help="expected sha256 of IN")
    parser.add_argument(
        "--no-verify",
        action="store_true",
        help="skip building the model to check that the weights fit",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.arch not in _source_archs()[args.source]:  # argparse's own message for a bad choice
        parser.error(
            f"argument --arch: {args.arch!r} is not a {args.source} arch: {', '.join(_source_archs()[args.source])}"
        )
    return convert_checkpoint(
        args.input,
        args.output,
        source=args.source,
        arch=args.arch,
        config=args.config,
        sha256=args.sha256,
        verify=not args.no_verify,
    )


if __name__ == "__main__":
    main()
