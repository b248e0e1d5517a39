"""One dataset: :func:`check_dataset_dicts` runs the image, box, category and anchor checks on a
dataset's dicts and counts what it holds, into a :class:`~.report.DatasetReport`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .anchors import _anchor_coverage, _describe_scale, _warn_low_coverage
from .annotations import _Annotations
from .boxes import BAD_BOX_MODES, _box_problems, _classify_boxes
from .categories import _unknown_category_problems
from .images import READ_IMAGE_MODES, _check_images
from .report import DatasetReport, Problem

__all__ = ["check_dataset_dicts"]


def check_dataset_dicts(
    dicts: Sequence[dict],
    *,
    name: str,
    metadata: Any = None,
    num_classes: int | None = None,
    anchor_generator: Any = None,
    train_scale: float | tuple[float, float] | None = None,
    read_images: str = "auto",
    bad_boxes: str = "error",
    progress: bool = False,
) -> DatasetReport:
    """Check one dataset's dicts (as :meth:`DatasetCatalog.get` returns them, before any filtering).

    Args:
        dicts: the dataset dicts.
        name: the dataset's name, for the report.
        metadata: its :class:`Metadata` (or a dict): ``thing_classes`` and ``json_file`` are used if set.
        num_classes: the model's foreground class count, compared with ``len(thing_classes)``.
        anchor_generator: a built anchor generator (``strides``, ``offset``, and ``forward(features)``
            returning per level ``Tensor[H*W*A, 4]``) for the anchor coverage; None skips it.
        train_scale: the short edge the images are resized to, or ``(short_edge, max_size)``;
            None keeps the original size.
        read_images: ``"all"`` decodes every image, ``"exists"`` only checks that the files exist,
            ``"auto"`` decodes when there are at most 2000 images, ``"none"`` skips the image files.
        bad_boxes: the loading policy (see :func:`handle_bad_boxes`): bad boxes are errors with
            ``"error"`` and warnings with ``"drop"``/``"clip"``.
        progress: show a tqdm bar while decoding images.

    Returns:
        the :class:`DatasetReport`.
    """
    if read_images not in READ_IMAGE_MODES:
        raise ValueError(
            f"read_images={read_images!r} is not one of {', '.join(map(repr, READ_IMAGE_MODES))}"
        )
    if bad_boxes not in BAD_BOX_MODES:
        raise ValueError(f"bad_boxes={bad_boxes!r} is not one of {', '.join(map(repr, BAD_BOX_MODES))}")
    meta_get: Callable[[str], Any] = (
        (lambda key: metadata.get(key)) if metadata is not None else (lambda key: None)
    )
    classes = meta_get("thing_classes")
    json_file = meta_get("json_file")
    report = DatasetReport(name=name, json_file=os.fspath(json_file) if json_file else None)
    report.num_images = len(dicts)
    if read_images != "none":
        _check_images(dicts, report, read_images, progress)

    ann = _Annotations.from_dicts(dicts)
    codes = _classify_boxes(ann)
    suffix = "" if bad_boxes == "error" else f" (bad_boxes={bad_boxes!r} handles it)"
    for problem in _box_problems(dicts, ann, codes, "error" if bad_boxes == "error" else "warning", suffix):
        report.add(problem)

    num_known = len(classes) if classes is not None else num_classes
    known = (ann.category >= 0) & (ann.category < num_known) if num_known is not None else ann.category >= 0
    for problem in _unknown_category_problems(dicts, ann, ~known, classes, num_known):
        report.add(problem)
    if num_classes is not None and classes is not None and num_classes != len(classes):
        report.add(
            Problem(
                "num_classes_mismatch",
                "error",
                f"the model has num_classes={num_classes} but dataset {name!r} has {len(classes)} classes "
                f"({', '.join(map(str, classes[:10]))}{', ...' if len(classes) > 10 else ''}); "
                f"set model.roi_heads.num_classes={len(classes)}",
            )
        )

    instances = ~ann.crowd & known
    per_class = np.bincount(ann.category[instances], minlength=num_known or 0)
    report.num_instances = int(instances.sum())
    report.instances_per_class = {
        (str(classes[c]) if classes is not None else str(c)): int(n) for c, n in enumerate(per_class)
    }
    with_objects = np.zeros(len(dicts), bool)
    with_objects[ann.image[~ann.crowd]] = True
    report.images_without_objects = int((~with_objects).sum())
    report.files_without_objects = [
        str(dicts[i].get("file_name")) for i in np.flatnonzero(~with_objects)[: report.max_per_kind]
    ]

    if anchor_generator is None:
        report.coverage_note = report.coverage_note or "not computed (no anchor generator)"
    else:
        usable = ~ann.crowd & np.isin(codes, (0, 3))  # outside boxes count as the mapper clips them
        report.anchor_coverage = _anchor_coverage(ann, usable, anchor_generator, train_scale)
        report.coverage_note = _describe_scale(train_scale)
        _warn_low_coverage(report)
    return report
