"""Dataset checks before training: what a dataset holds, and what in it would quietly hurt training.

:func:`check_dataset_dicts` looks at one dataset's dicts; :func:`check_datasets` at the datasets a
config trains (or tests) on, with the model's class count and anchors. Both return
:class:`DatasetReport` s: counts (images, instances per class, images without objects), problems
(each naming the image file, the json file and the annotation id) and anchor coverage.

Problems that are errors (``report.ok`` is False):

* ``missing_image``, ``unreadable_image``, ``image_size_mismatch`` (decoded size differs from the dict's);
* ``degenerate_box`` (width or height <= 0, non-finite or malformed), ``box_outside_image``
  (beyond a 1 px tolerance), ``wrong_layout`` (XYXY written where XYWH is expected, or the reverse);
  with ``bad_boxes="drop"`` or ``"clip"`` (what :func:`~rcnnzoo.data.get_detection_dataset_dicts`
  then does with them) these three are warnings instead;
* ``unknown_category`` (a ``category_id`` outside the metadata's ``thing_classes``),
  ``num_classes_mismatch`` (the model's ``num_classes`` vs ``len(thing_classes)``),
  ``class_mismatch`` (datasets trained together with different ``thing_classes``),
  ``load_failed`` (the dataset could not be loaded at all).

Warnings: ``low_anchor_coverage`` (fewer than half the boxes of a size bucket have an anchor with
IoU >= 0.5 at the training scale).
"""

from __future__ import annotations

import logging
import math
import os
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from rcnnzoo.structures import BoxMode

from .catalog import DatasetCatalog, MetadataCatalog

__all__ = [
    "BAD_BOX_MODES",
    "DatasetReport",
    "Problem",
    "check_category_ids",
    "check_dataset_dicts",
    "check_datasets",
    "handle_bad_boxes",
]

logger = logging.getLogger(__name__)

BAD_BOX_MODES = ("error", "drop", "clip")
READ_IMAGE_MODES = ("auto", "all", "exists", "none")
AUTO_DECODE_LIMIT = 2000  # read_images="auto" decodes datasets up to this many images
BOX_TOLERANCE = 1.0  # pixels a box may stick out of its image
COVERAGE_IOU = 0.5
LOW_COVERAGE = 0.5  # a size bucket below this share of covered boxes gets a warning
# COCO's size buckets, by box area in the original image
SIZE_BUCKETS = (("small", 0.0, 32.0**2), ("medium", 32.0**2, 96.0**2), ("large", 96.0**2, math.inf))

# bad-box kinds, by their code in _classify_boxes
_BOX_KINDS = {1: "degenerate_box", 2: "wrong_layout", 3: "box_outside_image"}
_XYWH_MODES = (int(BoxMode.XYWH_ABS), int(BoxMode.XYWH_REL))
_REL_MODES = (int(BoxMode.XYXY_REL), int(BoxMode.XYWH_REL))


# ----------------------------------------------------------------------------- report


@dataclass
class Problem:
    """One thing wrong in a dataset.

    Attributes:
        kind: e.g. ``"degenerate_box"``, ``"missing_image"`` (see the module docstring).
        severity: ``"error"`` or ``"warning"``.
        message: what is wrong, readable on its own.
        file: the image's ``file_name`` (None for dataset-wide problems).
        json_file: the annotation file the dataset was read from, when the metadata has it.
        annotation_id, image_id: the ``id`` of the annotation and ``image_id`` of the image, if any.
    """

    kind: str
    severity: str
    message: str
    file: str | None = None
    json_file: str | None = None
    annotation_id: Any = None
    image_id: Any = None

    def describe(self) -> str:
        """One line: ``file [annotation id=..]: message``."""
        where = self.file or ""
        if self.annotation_id is not None:
            where += f" [annotation id={self.annotation_id}]"
        return f"{where}: {self.message}" if where else self.message

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "severity": self.severity,
            "message": self.message,
            "file": _jsonable(self.file),
            "json_file": _jsonable(self.json_file),
            "annotation_id": _jsonable(self.annotation_id),
            "image_id": _jsonable(self.image_id),
        }


@dataclass
class DatasetReport:
    """What :func:`check_dataset_dicts` found in one dataset.

    ``problems`` keeps at most ``max_per_kind`` problems of each kind; ``counts`` has the full count
    of each kind. ``anchor_coverage`` maps ``"all"``, ``"small"``, ``"medium"``, ``"large"`` to
    ``{"boxes": n, "covered": k, "share": k / n or None}`` (None when it was not computed; then
    ``coverage_note`` says why), where covered means the best anchor has IoU >= 0.5 at the
    training scale (``coverage_note`` also says which scale).
    """

    name: str
    split: str | None = None
    json_file: str | None = None
    num_images: int = 0
    num_instances: int = 0
    instances_per_class: dict[str, int] = field(default_factory=dict)
    images_without_objects: int = 0
    files_without_objects: list[str] = field(default_factory=list)
    images_checked: str = "not checked"
    anchor_coverage: dict[str, dict[str, Any]] | None = None
    coverage_note: str = ""
    problems: list[Problem] = field(default_factory=list)
    counts: Counter = field(default_factory=Counter)
    max_per_kind: int = 1000

    @property
    def label(self) -> str:
        """``'name'``, with ``[split]`` when the report is of a config's split."""
        return repr(self.name) + (f" [{self.split}]" if self.split else "")

    @property
    def ok(self) -> bool:
        """True when there is no error (warnings allowed)."""
        return not self.errors

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "warning"]

    def add(self, problem: Problem) -> None:
        """Record ``problem`` (counted always, kept up to ``max_per_kind`` of its kind)."""
        if problem.json_file is None:
            problem.json_file = self.json_file
        self.counts[problem.kind] += 1
        if self.counts[problem.kind] <= self.max_per_kind:
            self.problems.append(problem)

    def format(self, max_lines_per_kind: int = 10) -> str:
        """A readable multi-line summary; at most ``max_lines_per_kind`` problems of each kind are listed."""
        source = f" (from {self.json_file})" if self.json_file else ""
        lines = [
            f"Dataset {self.label}{source}: {'OK' if self.ok else 'ERRORS'}",
            f"  {self.num_images} images ({self.images_checked}), {self.num_instances} instances, "
            f"{self.images_without_objects} images without objects",
        ]
        if self.instances_per_class:
            per_class = ", ".join(f"{k}: {v}" for k, v in self.instances_per_class.items())
            lines.append(f"  instances per class: {per_class}")
        lines.append(f"  anchor coverage (best anchor IoU >= {COVERAGE_IOU}): {self._format_coverage()}")
        for severity in ("error", "warning"):
            kinds = list(dict.fromkeys(p.kind for p in self.problems if p.severity == severity))
            if not kinds:
                continue
            lines.append(f"  {severity}s:")
            for kind in kinds:
                shown = [p for p in self.problems if p.kind == kind][:max_lines_per_kind]
                lines.append(f"    {kind} ({self.counts[kind]}):")
                lines += [f"      {p.describe()}" for p in shown]
                if self.counts[kind] > len(shown):
                    lines.append(f"      ... and {self.counts[kind] - len(shown)} more")
        return "\n".join(lines)

    def _format_coverage(self) -> str:
        if not self.anchor_coverage:
            return self.coverage_note or "not computed"
        parts = []
        for bucket, c in self.anchor_coverage.items():
            share = "-" if c["share"] is None else f"{100 * c['share']:.1f}%"
            parts.append(f"{bucket} {share} ({c['covered']}/{c['boxes']})")
        return ", ".join(parts) + (f"; {self.coverage_note}" if self.coverage_note else "")

    def to_dict(self) -> dict[str, Any]:
        """JSON-able: the counts, the coverage and every kept problem."""
        return {
            "name": self.name,
            "split": self.split,
            "ok": self.ok,
            "json_file": self.json_file,
            "num_images": self.num_images,
            "num_instances": self.num_instances,
            "instances_per_class": dict(self.instances_per_class),
            "images_without_objects": self.images_without_objects,
            "files_without_objects": list(self.files_without_objects),
            "images_checked": self.images_checked,
            "anchor_coverage": self.anchor_coverage,
            "coverage_note": self.coverage_note,
            "problem_counts": dict(self.counts),
            "problems": [p.to_dict() for p in self.problems],
        }


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


# ----------------------------------------------------------------------------- annotations as arrays


@dataclass
class _Annotations:
    """Every annotation of a list of dataset dicts as flat arrays (N annotations, M images).

    Attributes:
        image: int64[N], the index of each annotation's image in the dicts.
        index: int64[N], its position in that image's ``annotations``.
        raw: float64[N, 4], ``bbox`` as written (NaN where missing or not 4 numbers).
        mode: int64[N], ``bbox_mode``.
        category: int64[N], ``category_id`` (-1 where missing or not an integer).
        crowd: bool[N], ``iscrowd``.
        height, width: float64[N], the size of each annotation's image.
    """

    image: np.ndarray
    index: np.ndarray
    raw: np.ndarray
    mode: np.ndarray
    category: np.ndarray
    crowd: np.ndarray
    height: np.ndarray
    width: np.ndarray

    @classmethod
    def from_dicts(cls, dicts: Sequence[dict]) -> _Annotations:
        image, index, raw, mode, category, crowd = [], [], [], [], [], []
        sizes = np.asarray([(d.get("height", np.nan), d.get("width", np.nan)) for d in dicts], np.float64)
        for i, d in enumerate(dicts):
            for j, a in enumerate(d.get("annotations", ())):
                image.append(i)
                index.append(j)
                raw.append(_four_numbers(a.get("bbox")))
                mode.append(int(a.get("bbox_mode", BoxMode.XYXY_ABS)))
                cid = a.get("category_id")
                category.append(
                    cid if isinstance(cid, (int, np.integer)) and not isinstance(cid, bool) else -1
                )
                crowd.append(bool(a.get("iscrowd", 0)))
        image_arr = np.asarray(image, np.int64)
        sizes = sizes.reshape(-1, 2)
        return cls(
            image=image_arr,
            index=np.asarray(index, np.int64),
            raw=np.asarray(raw, np.float64).reshape(-1, 4),
            mode=np.asarray(mode, np.int64),
            category=np.asarray(category, np.int64),
            crowd=np.asarray(crowd, bool),
            height=sizes[image_arr, 0],
            width=sizes[image_arr, 1],
        )

    def __len__(self) -> int:
        return len(self.image)

    def pixel_raw(self) -> np.ndarray:
        """float64[N, 4]: ``raw`` in pixels (relative modes scaled by the image size), layout unchanged."""
        out = self.raw.copy()
        rel = np.isin(self.mode, _REL_MODES)
        out[rel] *= np.stack([self.width, self.height, self.width, self.height], axis=1)[rel]
        return out

    def xyxy(self) -> np.ndarray:
        """float64[N, 4]: the boxes as absolute XYXY."""
        out = self.pixel_raw()
        wh = np.isin(self.mode, _XYWH_MODES)
        out[wh, 2:] += out[wh, :2]
        return out


def _four_numbers(bbox: Any) -> list[float]:
    try:
        values = [float(v) for v in bbox]
    except (TypeError, ValueError):
        return [math.nan] * 4
    return values if len(values) == 4 else [math.nan] * 4


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


# ----------------------------------------------------------------------------- bad boxes, as a policy


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


# ----------------------------------------------------------------------------- images


def _read_status(path: str | None, decode: bool) -> tuple[str, tuple[int, int] | None]:
    """("ok" | "missing" | "unreadable", (h, w) when decoded)."""
    if not path or not os.path.isfile(path):
        return "missing", None
    if not decode:
        return "ok", None
    image = cv2.imread(path, cv2.IMREAD_COLOR)  # as the mapper reads it (EXIF orientation applied)
    if image is None:
        return "unreadable", None
    return "ok", image.shape[:2]


def _check_images(dicts: Sequence[dict], report: DatasetReport, read_images: str, progress: bool) -> None:
    decode = read_images == "all" or (read_images == "auto" and len(dicts) <= AUTO_DECODE_LIMIT)
    report.images_checked = "decoded" if decode else "existence checked"
    paths = [d.get("file_name") for d in dicts]
    bar = None
    if progress and decode:
        from tqdm import tqdm

        bar = tqdm(total=len(paths), desc=f"Reading the images of {report.name}", unit="img")
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        # cv2 decodes without the GIL: threads help; a plain existence check needs none
        results: Iterable = (
            pool.map(lambda p: _read_status(p, True), paths)
            if decode
            else (_read_status(p, False) for p in paths)
        )
        for d, path, (status, hw) in zip(dicts, paths, results):
            if bar is not None:
                bar.update()
            at = {"file": path, "image_id": d.get("image_id")}
            relative = status != "ok" and path and not os.path.isabs(path)
            looked = f" (looked for {os.path.abspath(path)})" if relative else ""
            if status == "missing":
                message = f"image file not found{looked}" if path else "the dataset dict has no file_name"
                report.add(Problem("missing_image", "error", message, **at))
            elif status == "unreadable":
                message = f"image file cannot be decoded (corrupt or not an image){looked}"
                report.add(Problem("unreadable_image", "error", message, **at))
            elif hw is not None and "height" in d and "width" in d and hw != (d["height"], d["width"]):
                swapped = " (swapped: EXIF orientation?)" if hw == (d["width"], d["height"]) else ""
                message = (
                    f"decoded image is {hw[1]}x{hw[0]} (WxH) but the dataset says "
                    f"{d['width']}x{d['height']}{swapped}"
                )
                report.add(Problem("image_size_mismatch", "error", message, **at))
    if bar is not None:
        bar.close()


# ----------------------------------------------------------------------------- anchor coverage


def _anchor_levels(anchor_generator: Any) -> list[tuple[float, float, np.ndarray]]:
    """Per level: (stride, offset, cell anchors float64[A, 4] XYXY centred on the grid point).

    Asks the generator for the anchors of a 1x1 feature map of each level, which sit on grid point
    ``(offset * stride, offset * stride)``.
    """
    import torch

    strides = [float(s) for s in anchor_generator.strides]
    offset = float(getattr(anchor_generator, "offset", 0.0))
    with torch.no_grad():
        anchors = anchor_generator([torch.zeros(1, 1, 1, 1) for _ in strides])
    return [(s, offset, a.detach().cpu().double().numpy() - offset * s) for s, a in zip(strides, anchors)]


def _best_anchor_iou(
    boxes: np.ndarray, image_hw: np.ndarray, levels: list, chunk: int = 100_000
) -> np.ndarray:
    """float64[N]: each box's best IoU with an anchor.

    Args:
        boxes: float64[N, 4] XYXY at the scale the model sees.
        image_hw: float64[N, 2] size of each box's (scaled) image, to bound the grid.
        levels: from :func:`_anchor_levels`.

    Anchors are translation invariant and the IoU of two boxes of fixed sizes only falls as their
    centres move apart along either axis, so the best anchor of a level is one of those on the grid
    point nearest the box centre.
    """
    best = np.zeros(len(boxes))
    for start in range(0, len(boxes), chunk):
        b = boxes[start : start + chunk]
        hw = image_hw[start : start + chunk]
        centre = (b[:, :2] + b[:, 2:]) / 2  # (x, y)
        area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
        for stride, offset, cells in levels:
            last = np.maximum(np.ceil(hw[:, ::-1] / stride) - 1, 0)  # last grid index in (x, y)
            grid = (np.clip(np.round(centre / stride - offset), 0, last) + offset) * stride
            anchors = cells[None] + np.tile(grid, 2)[:, None]  # [n, A, 4]
            iw = np.minimum(b[:, None, 2], anchors[..., 2]) - np.maximum(b[:, None, 0], anchors[..., 0])
            ih = np.minimum(b[:, None, 3], anchors[..., 3]) - np.maximum(b[:, None, 1], anchors[..., 1])
            inter = np.clip(iw, 0, None) * np.clip(ih, 0, None)
            anchor_area = (cells[:, 2] - cells[:, 0]) * (cells[:, 3] - cells[:, 1])
            iou = inter / (area[:, None] + anchor_area[None] - inter)
            best[start : start + chunk] = np.maximum(best[start : start + chunk], iou.max(axis=1))
    return best


def _image_scale(h: np.ndarray, w: np.ndarray, train_scale: Any) -> np.ndarray:
    """float64[N]: the resize factor of ResizeShortestEdge(short_edge, max_size) for images (h, w)."""
    if train_scale is None:
        return np.ones_like(h)
    short, max_size = (train_scale, math.inf) if np.isscalar(train_scale) else train_scale
    return np.minimum(float(short) / np.minimum(h, w), float(max_size) / np.maximum(h, w))


def _anchor_coverage(ann: _Annotations, usable: np.ndarray, anchor_generator: Any, train_scale: Any) -> dict:
    """Coverage by size bucket of the ``usable`` (bool[N]) boxes, clipped to their image as the mapper does."""
    xyxy = ann.xyxy()[usable]
    h, w = ann.height[usable], ann.width[usable]
    xyxy[:, 0::2] = np.clip(xyxy[:, 0::2], 0, w[:, None])
    xyxy[:, 1::2] = np.clip(xyxy[:, 1::2], 0, h[:, None])
    nonempty = (xyxy[:, 2] > xyxy[:, 0]) & (xyxy[:, 3] > xyxy[:, 1])
    xyxy, h, w = xyxy[nonempty], h[nonempty], w[nonempty]
    area = (xyxy[:, 2] - xyxy[:, 0]) * (xyxy[:, 3] - xyxy[:, 1])
    scale = _image_scale(h, w, train_scale)
    covered = (
        _best_anchor_iou(
            xyxy * scale[:, None], np.stack([h, w], axis=1) * scale[:, None], _anchor_levels(anchor_generator)
        )
        >= COVERAGE_IOU
    )
    buckets = [("all", 0.0, math.inf), *SIZE_BUCKETS]
    out = {}
    for bucket, lo, hi in buckets:
        sel = (area >= lo) & (area < hi)
        n, k = int(sel.sum()), int(covered[sel].sum())
        out[bucket] = {"boxes": n, "covered": k, "share": k / n if n else None}
    return out


def _describe_scale(train_scale: Any) -> str:
    if train_scale is None:
        return "at the original image size"
    if np.isscalar(train_scale):
        return f"at short edge {train_scale:g}"
    short, max_size = train_scale
    return f"at short edge {short:g}, long edge <= {max_size:g}"


# ----------------------------------------------------------------------------- one dataset


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


def _unknown_category_problems(
    dicts: Sequence[dict],
    ann: _Annotations,
    unknown: np.ndarray,
    classes: Sequence[str] | None,
    num_known: int | None,
) -> Iterable[Problem]:
    allowed = f"0..{num_known - 1}" if num_known else "none"
    what = f"the {num_known} classes of the metadata" if classes is not None else f"num_classes={num_known}"
    for k in np.flatnonzero(unknown):
        d = dicts[ann.image[k]]
        a = d["annotations"][ann.index[k]]
        raw = a.get("dataset_category_id")
        in_file = f" (id {raw} in the annotation file)" if raw is not None else ""
        yield Problem(
            "unknown_category",
            "error",
            f"category_id={a.get('category_id')!r}{in_file} is not among {what} ({allowed})",
            file=d.get("file_name"),
            annotation_id=a.get("id"),
            image_id=d.get("image_id"),
        )


def check_category_ids(
    dicts: Sequence[dict],
    thing_classes: Sequence[str] | None,
    *,
    name: str = "",
    json_file: str | None = None,
) -> None:
    """Raise if an annotation's ``category_id`` is not an integer in ``0..len(thing_classes) - 1``.

    Without ``thing_classes`` only negative or non-integer ids are refused.

    Raises:
        ValueError: listing the offending annotations (image file and annotation id), at most 20.
    """
    ann = _Annotations.from_dicts(dicts)
    num_known = len(thing_classes) if thing_classes is not None else None
    unknown = (ann.category < 0) | (ann.category >= num_known if num_known is not None else False)
    if unknown.any():
        problems = list(_unknown_category_problems(dicts, ann, unknown, thing_classes, num_known))
        where = f"Dataset {name!r}" + (f" ({json_file})" if json_file else "")
        raise ValueError(
            f"{where} has {len(problems)} annotations with an unknown category_id:\n"
            + _listing(problems)
            + "\nFix the annotations or the dataset's thing_classes."
        )


def _listing(problems: Sequence[Problem], limit: int = 20) -> str:
    lines = [f"  {p.describe()}" for p in problems[:limit]]
    if len(problems) > limit:
        lines.append(f"  ... and {len(problems) - limit} more")
    return "\n".join(lines)


def _warn_low_coverage(report: DatasetReport) -> None:
    assert report.anchor_coverage is not None
    for bucket, c in report.anchor_coverage.items():
        if bucket == "all" or c["share"] is None or c["share"] >= LOW_COVERAGE:
            continue
        report.add(
            Problem(
                "low_anchor_coverage",
                "warning",
                f"only {100 * c['share']:.1f}% of the {bucket} boxes ({c['covered']}/{c['boxes']}) have an "
                f"anchor with IoU >= {COVERAGE_IOU} {report.coverage_note}; the RPN still matches each box "
                "to its best anchor, but expect lower recall for them (see "
                "model.proposal_generator.anchor_generator sizes and aspect_ratios)",
            )
        )


# ----------------------------------------------------------------------------- the datasets of a config


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
