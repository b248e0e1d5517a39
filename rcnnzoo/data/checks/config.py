"""The datasets of a config: :func:`check_datasets` reads a lazy config's dataset names, bad-box
policy, training scale, class count and anchors, and checks each dataset with
:func:`~.dataset.check_dataset_dicts` (plus ``load_failed`` and ``class_mismatch``).
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np

from ..catalog import DatasetCatalog, MetadataCatalog
from .dataset import check_dataset_dicts
from .report import DatasetReport, Problem

__all__ = ["check_datasets"]

logger = logging.getLogger(__package__)  # the package's logger, so log records keep their name


def _cfg(cfg: Any, dotted_key: str, default: Any = None) -> Any:
    node = cfg
    for part in dotted_key.split("."):
        if node is None or not hasattr(node, "__contains__") or part not in node:
            return default
        node = node[part]
    return node


def _field(node: Any, key: str) -> Any:
    """``node[key]`` of a config node or dict, else the attribute ``key`` of a built object; None if absent."""
    if hasattr(node, "keys"):
        return node.get(key) if key in node else None
    return getattr(node, key, None)


def _train_scale(augmentations: Any) -> tuple[tuple[float, float] | None, str]:
    """(short_edge, max_size) of the first ResizeShortestEdge in a mapper's augmentations (or None), and a note.

    Several short edges (multi-scale training) give the middle of their range.
    """
    for aug in augmentations or ():
        lengths = _field(aug, "short_edge_length")
        if lengths is None:
            continue
        max_size = _field(aug, "max_size")
        lengths = [lengths] if np.isscalar(lengths) else list(lengths)
        short = (min(lengths) + max(lengths)) / 2
        note = "" if len(lengths) == 1 else f" (middle of {min(lengths)}..{max(lengths)})"
        return (float(short), float(max_size) if max_size is not None else math.inf), note
    return None, ""


def _model_anchor_generator(cfg: Any, model: Any) -> tuple[Any, str]:
    """The anchor generator of ``model``, or of the config's model built on the CPU; (None, why) if none."""
    if model is None:
        if _cfg(cfg, "model.proposal_generator.anchor_generator") is None:
            return None, "not computed (the model config has no proposal_generator.anchor_generator)"
        from rcnnzoo.config import instantiate

        try:
            model = instantiate(cfg.model)
        except Exception as e:  # a report should not die on a model that only fails to build here
            return None, f"not computed (building the model failed: {type(e).__name__}: {e})"
    generator = getattr(getattr(model, "proposal_generator", None), "anchor_generator", None)
    return generator, "" if generator is not None else "not computed (the model has no anchor generator)"


def check_datasets(
    cfg: Any,
    *,
    split: str = "train",
    model: Any = None,
    read_images: str = "auto",
    progress: bool = False,
) -> list[DatasetReport]:
    """Check the datasets a config loads for ``split``, against the model they train.

    Reads ``dataloader.<split>.dataset.names`` (one name or several) and ``.bad_boxes``, the
    resize of ``dataloader.<split>.mapper.augmentations`` (the middle of its short-edge range),
    ``model.roi_heads.num_classes`` and the model's anchor generator.

    Args:
        cfg: a lazy config (``model``, ``dataloader``).
        split: ``"train"``, ``"test"`` or ``"both"``.
        model: the built model, if there is one (its anchor generator is used); else the config's
            model is built on the CPU for the anchors.
        read_images, progress: as in :func:`check_dataset_dicts`.

    Returns:
        one report per dataset name (in the config's order, train before test). A dataset that fails
        to load gets a report with a ``load_failed`` error. A split without dataset names gives none.
    """
    if split not in ("train", "test", "both"):
        raise ValueError(f"split={split!r} is not one of 'train', 'test', 'both'")
    splits = ("train", "test") if split == "both" else (split,)
    num_classes = getattr(getattr(model, "roi_heads", None), "num_classes", None)
    if num_classes is None:
        num_classes = _cfg(cfg, "model.roi_heads.num_classes")
        if not isinstance(num_classes, (int, type(None))):  # e.g. L(num_classes_of)(names=...)
            from rcnnzoo.config import instantiate

            num_classes = instantiate(num_classes)
    anchors: tuple[Any, str] | None = None
    reports = []
    for s in splits:
        names = _cfg(cfg, f"dataloader.{s}.dataset.names")
        if names is None:
            logger.info("dataloader.%s.dataset has no dataset names; nothing to check for %s", s, s)
            continue
        names = [names] if isinstance(names, str) else [str(n) for n in names]
        bad_boxes = _cfg(cfg, f"dataloader.{s}.dataset.bad_boxes", "error")
        scale, scale_note = _train_scale(_cfg(cfg, f"dataloader.{s}.mapper.augmentations"))
        first_classes: tuple[str, Any] | None = None
        for name in names:
            try:
                dicts = DatasetCatalog.get(name)
            except (KeyError, OSError, ValueError, TypeError) as e:
                report = DatasetReport(name=name, split=s)
                report.add(Problem("load_failed", "error", f"{type(e).__name__}: {e}"))
                reports.append(report)
                continue
            if anchors is None:
                anchors = _model_anchor_generator(cfg, model)
            metadata = MetadataCatalog.get(name)
            report = check_dataset_dicts(
                dicts,
                name=name,
                metadata=metadata,
                num_classes=num_classes,
                anchor_generator=anchors[0],
                train_scale=scale,
                read_images=read_images,
                bad_boxes=bad_boxes,
                progress=progress,
            )
            report.split = s
            if anchors[0] is None:
                report.coverage_note = anchors[1]
            else:
                report.coverage_note = f"{s} scale, {report.coverage_note}{scale_note}"
            classes = metadata.get("thing_classes")
            if first_classes is None:
                first_classes = (name, classes)
            elif (
                classes is not None
                and first_classes[1] is not None
                and list(classes) != list(first_classes[1])
            ):
                report.add(
                    Problem(
                        "class_mismatch",
                        "error",
                        f"thing_classes {list(classes)} differ from those of {first_classes[0]!r} "
                        f"({list(first_classes[1])}), yet both are loaded together in dataloader.{s}",
                    )
                )
            reports.append(report)
    return reports
