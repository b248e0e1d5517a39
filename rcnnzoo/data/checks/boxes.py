"""Bad boxes: ``degenerate_box``, ``box_outside_image`` and ``wrong_layout``, found in the annotation
arrays, reported as :class:`~.report.Problem` s, and handled as a loading policy by
:func:`handle_bad_boxes` (``bad_boxes="error"``, ``"drop"`` or ``"clip"``).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Sequence

import numpy as np

from rcnnzoo.structures import BoxMode

from .annotations import _XYWH_MODES, _Annotations
from .report import Problem, _listing

__all__ = ["BAD_BOX_MODES", "BOX_TOLERANCE", "handle_bad_boxes"]

logger = logging.getLogger(__package__)  # the package's logger, so log records keep their name

BAD_BOX_MODES = ("error", "drop", "clip")
BOX_TOLERANCE = 1.0  # pixels a box may stick out of its image

# bad-box kinds, by their code in _classify_boxes
_BOX_KINDS = {1: "degenerate_box", 2: "wrong_layout", 3: "box_outside_image"}


def _classify_boxes(ann: _Annotations, tol: float = BOX_TOLERANCE) -> np.ndarray:
    """int64[N]: 0 for a good box, else a key of ``_BOX_KINDS`` (wrong layout first, then degenerate, outside).

    Wrong layout: an XYWH box whose ``x + w`` or ``y + h`` passes the image border while its four
    numbers read as corners fit the image (with ``x2 > x1``, ``y2 > y1``); or an XYXY box with
    ``x2 <= x1`` or ``y2 <= y1`` whose numbers read as ``(x, y, w, h)`` fit.
    """
    W, H = ann.width, ann.height
    x1, y1, x2, y2 = ann.xyxy().T
    a, b, c, d = ann.pixel_raw().T  # the numbers as written, in pixels
    with np.errstate(invalid="ignore"):
        finite = np.isfinite(ann.raw).all(axis=1)
        empty = ~finite | (x2 <= x1) | (y2 <= y1)
        outside = finite & ((x1 < -tol) | (y1 < -tol) | (x2 > W + tol) | (y2 > H + tol))
        starts_inside = (a >= -tol) & (b >= -tol)
        is_xywh = np.isin(ann.mode, _XYWH_MODES)
        # XYWH mode, numbers read as corners (a, b, c, d)
        corners_fit = starts_inside & (c > a) & (d > b) & (c <= W + tol) & (d <= H + tol)
        # XYXY mode, numbers read as (x, y, w, h)
        sizes_fit = starts_inside & (c > 0) & (d > 0) & (a + c <= W + tol) & (b + d <= H + tol)
        layout = np.where(is_xywh, outside & corners_fit, finite & empty & sizes_fit)
    return np.where(layout, 2, np.where(empty, 1, np.where(outside, 3, 0))).astype(np.int64)


def _box_message(code: int, raw: Sequence[float], mode: int, h: float, w: float) -> str:
    layout = BoxMode(mode).name
    numbers = "[" + ", ".join(f"{v:g}" for v in raw) + "]"
    if code == 1:
        if not np.isfinite(raw).all():
            return f"bbox {numbers} ({layout}) is missing, malformed or not finite"
        return f"bbox {numbers} ({layout}) has width or height <= 0"
    if code == 2:
        if mode in _XYWH_MODES:
            return (
                f"bbox {numbers} ({layout}) ends beyond the {w:g}x{h:g} (WxH) image, but read as corners "
                "(x1, y1, x2, y2) it fits: XYXY written where XYWH is expected?"
            )
        return (
            f"bbox {numbers} ({layout}) has x2 <= x1 or y2 <= y1, but read as (x, y, w, h) it fits: "
            "XYWH written where XYXY is expected?"
        )
    return f"bbox {numbers} ({layout}) extends beyond the {w:g}x{h:g} (WxH) image by more than {BOX_TOLERANCE:g} px"


def _box_problems(
    dicts: Sequence[dict], ann: _Annotations, codes: np.ndarray, severity: str, suffix: str = ""
) -> Iterable[Problem]:
    for k in np.flatnonzero(codes):
        d = dicts[ann.image[k]]
        a = d["annotations"][ann.index[k]]
        message = _box_message(int(codes[k]), ann.raw[k], int(ann.mode[k]), ann.height[k], ann.width[k])
        yield Problem(
            kind=_BOX_KINDS[int(codes[k])],
            severity=severity,
            message=message + suffix,
            file=d.get("file_name"),
            annotation_id=a.get("id"),
            image_id=d.get("image_id"),
        )


def handle_bad_boxes(
    dicts: list[dict], mode: str = "error", *, name: str = "", json_file: str | None = None
) -> list[dict]:
    """Apply a bad-box policy to one dataset's dicts (see :func:`~rcnnzoo.data.get_detection_dataset_dicts`).

    Bad boxes are the ``degenerate_box``, ``box_outside_image`` and ``wrong_layout`` ones.

    Args:
        mode: ``"error"`` raises; ``"drop"`` removes those annotations; ``"clip"`` clips the boxes
            outside the image to it (writing them as ``XYXY_ABS``) and removes the others and those
            clipped to nothing (a wrong-layout box clipped would still be wrong). Both log counts,
            and warn when boxes look like the wrong layout.
        name, json_file: name the dataset in messages.

    Returns:
        ``dicts`` itself when nothing is bad; else a new list (changed images are shallow copies).

    Raises:
        ValueError: for an unknown ``mode``; with ``"error"``, listing bad boxes (image file and
            annotation id), at most 20 and then a count.
    """
    if mode not in BAD_BOX_MODES:
        raise ValueError(f"bad_boxes={mode!r} is not one of {', '.join(map(repr, BAD_BOX_MODES))}")
    ann = _Annotations.from_dicts(dicts)
    codes = _classify_boxes(ann)
    if not codes.any():
        return dicts
    counts = Counter(_BOX_KINDS[int(c)] for c in codes[codes > 0])
    where = f"Dataset {name!r}" + (f" ({json_file})" if json_file else "")
    if mode == "error":
        problems = list(_box_problems(dicts, ann, codes, "error"))
        raise ValueError(
            f"{where} has {len(problems)} bad boxes ({_count_text(counts)}):\n"
            + _listing(problems)
            + "\nFix the annotations, or set bad_boxes='drop' or 'clip' where the dataset is loaded, "
            "e.g. dataloader.train.dataset.bad_boxes='drop'."
        )
    new_boxes: dict[int, list[float] | None] = dict.fromkeys(np.flatnonzero(codes).tolist())
    if mode == "clip":
        fixable = np.flatnonzero(codes == 3)  # outside: clip; degenerate or wrong layout: drop
        xyxy = ann.xyxy()[fixable]
        xyxy[:, 0::2] = np.clip(xyxy[:, 0::2], 0, ann.width[fixable, None])
        xyxy[:, 1::2] = np.clip(xyxy[:, 1::2], 0, ann.height[fixable, None])
        nonempty = (xyxy[:, 2] > xyxy[:, 0]) & (xyxy[:, 3] > xyxy[:, 1])
        for k, box, keep in zip(fixable.tolist(), xyxy.tolist(), nonempty.tolist()):
            new_boxes[k] = box if keep else None
    out = list(dicts)
    changed: dict[int, dict] = {}
    for k, box in new_boxes.items():
        i = int(ann.image[k])
        if i not in changed:
            changed[i] = out[i] = {**dicts[i], "annotations": list(dicts[i]["annotations"])}
        if box is not None:
            old = changed[i]["annotations"][ann.index[k]]
            changed[i]["annotations"][ann.index[k]] = {**old, "bbox": box, "bbox_mode": BoxMode.XYXY_ABS}
        else:
            changed[i]["annotations"][ann.index[k]] = None
    for d in changed.values():
        d["annotations"] = [a for a in d["annotations"] if a is not None]
    if counts["wrong_layout"]:
        logger.warning(
            "%s: %d of %d boxes look like the wrong layout (XYXY in XYWH or the reverse); check the "
            "bbox_mode of the dataset before training on it",
            where,
            counts["wrong_layout"],
            len(ann),
        )
    dropped = sum(box is None for box in new_boxes.values())
    clipped = len(new_boxes) - dropped
    if mode == "drop":
        logger.info("%s: dropped %d bad boxes (%s) [bad_boxes='drop']", where, dropped, _count_text(counts))
    else:
        logger.info(
            "%s: clipped %d boxes to their image and dropped %d (found %s) [bad_boxes='clip']",
            where,
            clipped,
            dropped,
            _count_text(counts),
        )
    return out


def _count_text(counts: Counter) -> str:
    return ", ".join(f"{kind}: {n}" for kind, n in sorted(counts.items()))
