"""PASCAL VOC detection AP, computed the way the official devkit's ``voc_eval`` does.

The devkit's algorithm, per class and IoU threshold:

1. sort that class's detections over all images by decreasing score;
2. for each detection, find the ground-truth box of the same image and class with the
   highest IoU (over *all* of them, matched or not). If that IoU is ``> threshold``
   (strictly): a difficult box makes the detection neither TP nor FP; otherwise it is a TP
   if the box was not matched yet (and the box becomes matched), else a FP (a duplicate).
   IoU at or below the threshold is a FP;
3. recall = cumulative TP / number of non-difficult boxes, precision = cumulative TP / (TP + FP);
4. AP is the mean of the best precision at recall >= 0, 0.1, ..., 1 (VOC2007's 11-point
   metric), or the area under the monotone (right-to-left max) envelope of the PR curve
   (VOC2010 onwards).

Step 2 does not look for the best *unmatched* box: a detection whose best box is already
taken is a duplicate even if it also overlaps another box well. This is the devkit's rule
and changes numbers for crowded images; it is kept for fidelity.

Coordinates: the devkit works on the XML's 1-based, pixel-inclusive boxes, with areas
``(x1 - x0 + 1) * (y1 - y0 + 1)``. rcnnzoo's VOC dataset dicts hold ``x0 - 1, y0 - 1, x1, y1``
(XYXY, 0-based continuous), so 1 is added back to ``x0, y0`` of ground truth and detections
alike before the devkit's formula is applied.
"""

from __future__ import annotations

import itertools
import logging
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from rcnnzoo.structures import BoxMode
from rcnnzoo.utils import comm

from .dataset_access import catalogs, dataset_metadata
from .evaluator import EVALUATOR_REGISTRY, DatasetEvaluator, format_results_table

__all__ = ["PascalVOCDetectionEvaluator", "voc_ap", "voc_eval_class", "devkit_iou"]

logger = logging.getLogger(__name__)

# The thresholds averaged into "AP" (COCO's 0.50:0.95 grid), reported next to VOC's AP50.
IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)


def voc_ap(recall: np.ndarray, precision: np.ndarray, use_07_metric: bool) -> float:
    """Average precision from a PR curve (the devkit's ``voc_ap``).

    Args:
        recall, precision: ndarray[D], the cumulative values after each detection in
            decreasing-score order (recall non-decreasing).
        use_07_metric: 11-point interpolated AP (VOC2007) instead of the area under the curve.
    """
    if use_07_metric:
        ap = 0.0
        # np.arange as in the devkit: its 0.1-steps are not exact (0.30000000000000004), so a
        # recall of exactly 0.3 does not reach the 0.3 point. Kept for identical numbers.
        for t in np.arange(0.0, 1.1, 0.1):
            reached = precision[recall >= t]
            ap += (reached.max() if reached.size else 0.0) / 11.0
        return float(ap)
    # Sentinels: recall 0 -> 1, precision 0 at both ends.
    mrec = np.concatenate(([0.0], recall, [1.0]))
    mpre = np.concatenate(([0.0], precision, [0.0]))
    # The envelope: precision at recall r is the best precision at any recall >= r.
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    steps = np.flatnonzero(mrec[1:] != mrec[:-1])
    return float(np.sum((mrec[steps + 1] - mrec[steps]) * mpre[steps + 1]))


def devkit_iou(boxes: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """IoU with the devkit's pixel-inclusive ``+1`` widths.

    Args:
        boxes: ndarray[D, 4], gt: ndarray[G, 4]; both 1-based inclusive XYXY (devkit coordinates).
    Returns:
        ndarray[D, G].
    """
    ix0 = np.maximum(boxes[:, None, 0], gt[None, :, 0])
    iy0 = np.maximum(boxes[:, None, 1], gt[None, :, 1])
    ix1 = np.minimum(boxes[:, None, 2], gt[None, :, 2])
    iy1 = np.minimum(boxes[:, None, 3], gt[None, :, 3])
    inter = np.maximum(ix1 - ix0 + 1.0, 0.0) * np.maximum(iy1 - iy0 + 1.0, 0.0)
    area_d = (boxes[:, 2] - boxes[:, 0] + 1.0) * (boxes[:, 3] - boxes[:, 1] + 1.0)
    area_g = (gt[:, 2] - gt[:, 0] + 1.0) * (gt[:, 3] - gt[:, 1] + 1.0)
    return inter / (area_d[:, None] + area_g[None, :] - inter)


def _best_matches(
    image_ids: Sequence[Any], boxes: np.ndarray, gt: Mapping[Any, tuple[np.ndarray, np.ndarray]]
) -> tuple[np.ndarray, np.ndarray]:
    """For each detection, its best IoU and the global index of that ground-truth box.

    Returns:
        (best_iou ndarray[D] (-inf when the image has no box), best_gt ndarray[D] int64 (-1 then)),
        global indices numbering the boxes of ``gt`` in iteration order.
    """
    offsets, start = {}, 0
    for image_id, (gt_boxes, _) in gt.items():
        offsets[image_id] = start
        start += len(gt_boxes)
    best_iou = np.full(len(image_ids), -np.inf)
    best_gt = np.full(len(image_ids), -1, dtype=np.int64)
    by_image: dict[Any, list[int]] = defaultdict(list)
    for det, image_id in enumerate(image_ids):
        by_image[image_id].append(det)
    for image_id, dets in by_image.items():
        gt_boxes = gt[image_id][0] if image_id in gt else np.zeros((0, 4))
        if len(gt_boxes) == 0:
            continue
        iou = devkit_iou(boxes[dets], gt_boxes)
        best_iou[dets] = iou.max(axis=1)
        best_gt[dets] = iou.argmax(axis=1) + offsets[image_id]  # first max on ties, like the devkit
    return best_iou, best_gt


def voc_eval_class(
    image_ids: Sequence[Any],
    scores: np.ndarray,
    boxes: np.ndarray,
    gt: Mapping[Any, tuple[np.ndarray, np.ndarray]],
    iou_thresholds: Sequence[float] = (0.5,),
    use_07_metric: bool = False,
) -> list[float]:
    """AP of one class at each IoU threshold, by the devkit's rules (see the module docstring).

    Args:
        image_ids: length D, the image of each detection.
        scores: ndarray[D].
        boxes: ndarray[D, 4], detections in devkit coordinates (1-based inclusive XYXY).
        gt: image id -> (boxes ndarray[G, 4] in devkit coordinates, difficult ndarray[G] bool),
            for every evaluated image (images without boxes of this class may be left out).
        iou_thresholds: a detection matches a box when IoU > threshold.
        use_07_metric: see :func:`voc_ap`.

    Returns:
        one AP per threshold; NaN when the class has no non-difficult box.
    """
    num_pos = int(sum(int((~difficult).sum()) for _, difficult in gt.values()))
    if num_pos == 0:
        return [float("nan")] * len(iou_thresholds)
    # A stable sort, so equal scores keep their input order (the devkit's quicksort leaves
    # the order of ties unspecified).
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    image_ids = [image_ids[i] for i in order]
    best_iou, best_gt = _best_matches(image_ids, np.asarray(boxes, dtype=np.float64)[order], gt)
    difficult = np.concatenate([d for _, d in gt.values()]) if gt else np.zeros(0, dtype=bool)

    aps = []
    for threshold in iou_thresholds:
        tp, fp = _tp_fp(best_iou, best_gt, difficult, threshold)
        tp, fp = np.cumsum(tp), np.cumsum(fp)
        recall = tp / num_pos
        precision = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
        aps.append(voc_ap(recall, precision, use_07_metric))
    return aps


def _tp_fp(
    best_iou: np.ndarray, best_gt: np.ndarray, difficult: np.ndarray, threshold: float
) -> tuple[np.ndarray, np.ndarray]:
    """The devkit's sequential greedy matching, vectorized.

    Detections arrive in score order and each only ever claims its best box, so the devkit's
    loop reduces to: among detections over the threshold on a non-difficult box, the first
    one per box is a TP and the rest are FPs.

    Returns:
        (tp, fp): ndarray[D] float, 1 where the detection is a TP (resp. FP).
    """
    hit = best_iou > threshold
    on_difficult = np.zeros_like(hit)
    on_difficult[hit] = difficult[best_gt[hit]]
    candidates = np.flatnonzero(hit & ~on_difficult)
    _, first = np.unique(best_gt[candidates], return_index=True)
    tp = np.zeros(len(best_iou))
    tp[candidates[first]] = 1.0
    fp = (~hit).astype(np.float64)
    fp[candidates] = 1.0 - tp[candidates]
    return tp, fp


@EVALUATOR_REGISTRY.register()
class PascalVOCDetectionEvaluator(DatasetEvaluator):
    """PASCAL VOC box AP with the official devkit's matching and AP rules.

    Reports ``{"bbox": {"AP", "AP50", "AP75", "AP50-<class>"...}}`` as fractions in [0, 1]
    (detectron2 reports percent): ``AP50`` is the VOC metric (mean over classes of the AP at
    IoU > 0.5), ``AP`` the mean of the class-mean AP over IoU thresholds 0.50:0.95, and
    ``AP50-<class>`` each class's AP at 0.5. Classes with no non-difficult box are NaN and
    left out of the means.

    Ground truth comes from the registered dataset dicts (boxes, ``category_id``, ``difficult``;
    a crowd box, ``iscrowd=1``, counts as difficult), restricted to the images passed through
    :meth:`process`: the devkit's numbers when the whole split is run, and no missed-object
    penalty for images that were not run.

    Args:
        dataset_name: a registered dataset; metadata needs ``thing_classes`` and, when
            ``use_07_metric`` is None, ``year``.
        use_07_metric: 11-point AP (VOC2007) or the area under the PR curve; None picks
            11-point for ``metadata.year == 2007``.
        distributed: gather detections from all processes and evaluate on the main one.
    """

    def __init__(self, dataset_name: str, use_07_metric: bool | None = None, *, distributed: bool = True):
        _, metadata_catalog = catalogs()
        metadata = metadata_catalog.get(dataset_name)
        self._dataset_name = dataset_name
        if use_07_metric is None:
            use_07_metric = int(getattr(metadata, "year", 0) or 0) == 2007
        self._use_07_metric = bool(use_07_metric)
        self._distributed = distributed
        self._gt: dict[Any, tuple[np.ndarray, np.ndarray, np.ndarray]] | None = None
        self._detections: list[tuple[Any, np.ndarray, np.ndarray, np.ndarray]] = []

    def reset(self) -> None:
        self._detections = []

    def process(self, inputs: list[dict], outputs: list[dict]) -> None:
        for inp, out in zip(inputs, outputs):
            if "instances" not in out:
                boxes, scores, classes = np.zeros((0, 4)), np.zeros(0), np.zeros(0, dtype=np.int64)
            else:
                instances = out["instances"].to("cpu")
                boxes = instances.pred_boxes.tensor.double().numpy()
                scores = instances.scores.double().numpy()
                classes = instances.pred_classes.numpy().astype(np.int64)
            self._detections.append((inp["image_id"], _to_devkit_coords(boxes), scores, classes))

    def _gather(self) -> list[tuple] | None:
        detections = self._detections
        if self._distributed and comm.get_world_size() > 1:
            comm.synchronize()
            gathered = comm.gather(detections, dst=0)
            if not comm.is_main_process():
                return None
            detections = list(itertools.chain(*gathered))
        unique: dict[Any, tuple] = {}
        for record in detections:  # a padding sampler may repeat images
            unique.setdefault(record[0], record)
        return list(unique.values())

    def evaluate(self) -> dict[str, dict[str, float]]:
        detections = self._gather()
        if detections is None:
            return {}
        if not detections:
            logger.warning("PascalVOCDetectionEvaluator(%r) received no images", self._dataset_name)
            return {}
        ground_truth = self._load_gt()
        image_ids = [d[0] for d in detections]
        missing = [i for i in image_ids if i not in ground_truth]
        if missing:
            raise ValueError(
                f"{len(missing)} image ids are not in {self._dataset_name!r}, e.g. {missing[:5]}"
            )

        class_names = list(dataset_metadata(self._dataset_name).thing_classes)
        evaluated_gt = {i: ground_truth[i] for i in image_ids}
        aps = self._per_class_aps(detections, evaluated_gt, len(class_names))  # [K classes, T thresholds]
        results = self._summarize(aps, class_names)
        logger.info(
            "VOC%s AP on %r (%d images):\n%s",
            "2007 11-point" if self._use_07_metric else " area",
            self._dataset_name,
            len(image_ids),
            format_results_table(results, columns=3),
        )
        return {"bbox": results}

    def _per_class_aps(
        self, detections: list[tuple], gt: Mapping[Any, tuple], num_classes: int
    ) -> np.ndarray:
        """ndarray[K, T]: AP of each class at each of IOU_THRESHOLDS."""
        aps = np.zeros((num_classes, len(IOU_THRESHOLDS)))
        for cls in range(num_classes):
            det_ids, det_scores, det_boxes = [], [], []
            for image_id, boxes, scores, classes in detections:
                keep = classes == cls
                det_ids.extend([image_id] * int(keep.sum()))
                det_scores.append(scores[keep])
                det_boxes.append(boxes[keep])
            class_gt = {
                image_id: (boxes[classes == cls], difficult[classes == cls])
                for image_id, (boxes, classes, difficult) in gt.items()
            }
            aps[cls] = voc_eval_class(
                det_ids,
                np.concatenate(det_scores),
                np.concatenate(det_boxes).reshape(-1, 4),
                class_gt,
                IOU_THRESHOLDS,
                self._use_07_metric,
            )
        return aps

    @staticmethod
    def _summarize(aps: np.ndarray, class_names: list[str]) -> dict[str, float]:
        defined = ~np.isnan(aps[:, 0])
        if not defined.all():
            absent = [n for n, d in zip(class_names, defined) if not d]
            logger.warning("Classes without ground truth (AP is NaN, left out of the means): %s", absent)
        mean_per_threshold = aps[defined].mean(axis=0) if defined.any() else np.full(aps.shape[1], np.nan)
        index = {round(float(t), 2): i for i, t in enumerate(IOU_THRESHOLDS)}
        results = {
            "AP": float(np.mean(mean_per_threshold)),
            "AP50": float(mean_per_threshold[index[0.5]]),
            "AP75": float(mean_per_threshold[index[0.75]]),
        }
        for name, ap in zip(class_names, aps[:, index[0.5]]):
            results[f"AP50-{name}"] = float(ap)
        return results

    def _load_gt(self) -> dict[Any, tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """image id -> (boxes ndarray[G, 4] devkit coords, classes ndarray[G], difficult ndarray[G] bool)."""
        if self._gt is None:
            dataset_catalog, _ = catalogs()
            self._gt = {r["image_id"]: _record_to_gt(r) for r in dataset_catalog.get(self._dataset_name)}
        return self._gt


def _to_devkit_coords(boxes: np.ndarray) -> np.ndarray:
    """0-based XYXY (ndarray[N, 4]) -> the devkit's 1-based inclusive XYXY: add 1 to x0, y0."""
    boxes = np.array(boxes, dtype=np.float64).reshape(-1, 4)
    boxes[:, :2] += 1.0
    return boxes


def _record_to_gt(record: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    anns = record.get("annotations", [])
    boxes = np.array(
        [BoxMode.convert(list(a["bbox"]), a["bbox_mode"], BoxMode.XYXY_ABS) for a in anns], dtype=np.float64
    )
    classes = np.array([int(a["category_id"]) for a in anns], dtype=np.int64)
    # VOC has no crowd regions; if a dataset does, a detection on one is neither right nor wrong.
    difficult = np.array([bool(a.get("difficult", False) or a.get("iscrowd", 0)) for a in anns], dtype=bool)
    return _to_devkit_coords(boxes), classes, difficult
