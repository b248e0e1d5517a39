"""Anchor coverage: the share of boxes, by COCO size bucket, whose best anchor has IoU >=
:data:`~.report.COVERAGE_IOU` at the training scale, and the ``low_anchor_coverage`` warning
(fewer than half the boxes of a size bucket covered).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .annotations import _Annotations
from .report import COVERAGE_IOU, DatasetReport, Problem

__all__ = ["LOW_COVERAGE", "SIZE_BUCKETS"]

LOW_COVERAGE = 0.5  # a size bucket below this share of covered boxes gets a warning
# COCO's size buckets, by box area in the original image
SIZE_BUCKETS = (("small", 0.0, 32.0**2), ("medium", 32.0**2, 96.0**2), ("large", 96.0**2, math.inf))


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
