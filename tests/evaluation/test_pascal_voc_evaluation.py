"""PascalVOCDetectionEvaluator: hand-derived APs and a plain re-implementation of the devkit."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from _synthetic_detections import LookupModel, as_loader

from rcnnzoo.evaluation import (
    EVALUATOR_REGISTRY,
    PascalVOCDetectionEvaluator,
    inference_on_dataset,
    voc_ap,
)
from rcnnzoo.structures import Boxes, BoxMode, Instances


def record(image_id, boxes, classes=None, difficult=None, size=(100, 100)):
    """A VOC-style dataset dict; boxes are XYXY 0-based (x0 - 1, y0 - 1 of the XML)."""
    classes = classes or [0] * len(boxes)
    difficult = difficult or [False] * len(boxes)
    anns = [
        {"bbox": list(map(float, b)), "bbox_mode": BoxMode.XYXY_ABS, "category_id": c, "difficult": d}
        for b, c, d in zip(boxes, classes, difficult)
    ]
    return {
        "file_name": f"{image_id}.jpg",
        "height": size[0],
        "width": size[1],
        "image_id": image_id,
        "annotations": anns,
    }


def detections(dicts, dets):
    """dets: list of (image_id, box, score, class) -> {image_id: Instances}."""
    out = {}
    for d in dicts:
        mine = [x for x in dets if x[0] == d["image_id"]]
        out[d["image_id"]] = Instances(
            (d["height"], d["width"]),
            pred_boxes=Boxes(torch.tensor([x[1] for x in mine], dtype=torch.float64).reshape(-1, 4)),
            scores=torch.tensor([x[2] for x in mine], dtype=torch.float64),
            pred_classes=torch.tensor([x[3] for x in mine], dtype=torch.int64),
        )
    return out


def evaluate(register_dataset, dicts, dets, classes=("thing",), **kwargs):
    metadata = {"thing_classes": list(classes), **kwargs.pop("metadata", {})}
    name = register_dataset(dicts, **metadata)
    evaluator = PascalVOCDetectionEvaluator(name, **kwargs)
    results = inference_on_dataset(
        LookupModel(detections(dicts, dets)), as_loader(dicts), evaluator, progress=False
    )
    return results["bbox"]


# Case A. GT: one box in image "a", two in image "b". Detections by score:
#   0.9 hits a's box (TP), 0.8 repeats it (FP, duplicate), 0.7 hits b's first box (TP), 0.6 hits nothing (FP).
#   npos = 3: recall 1/3, 1/3, 2/3, 2/3; precision 1, 1/2, 2/3, 1/2.
#   Area: envelope 1 up to recall 1/3, 2/3 up to 2/3, 0 after: 1/3 * 1 + 1/3 * 2/3 = 5/9.
#   11-point: t = 0, .1, .2, .3 -> 1; t = .4, .5, .6 -> 2/3; t >= .7 -> 0: (4 + 2) / 11 = 6/11.
#   Every IoU is 0 or 1, so the AP is the same at every threshold.
CASE_A_GT = [record("a", [[0, 0, 10, 10]]), record("b", [[20, 20, 40, 40], [50, 50, 70, 70]])]
CASE_A_DETS = [
    ("a", [0, 0, 10, 10], 0.9, 0),
    ("a", [0, 0, 10, 10], 0.8, 0),
    ("b", [20, 20, 40, 40], 0.7, 0),
    ("b", [0, 0, 5, 10], 0.6, 0),
]


def test_area_metric_by_hand(register_dataset):
    results = evaluate(register_dataset, CASE_A_GT, CASE_A_DETS, use_07_metric=False)
    assert results["AP50"] == pytest.approx(5 / 9)
    assert results["AP50-thing"] == pytest.approx(5 / 9)
    assert results["AP75"] == pytest.approx(5 / 9)
    assert results["AP"] == pytest.approx(5 / 9)


def test_11_point_metric_by_hand(register_dataset):
    results = evaluate(register_dataset, CASE_A_GT, CASE_A_DETS, use_07_metric=True)
    assert results["AP50"] == pytest.approx(6 / 11)


@pytest.mark.parametrize("year, expected", [(2007, 6 / 11), (2012, 5 / 9)])
def test_metric_follows_the_year(register_dataset, year, expected):
    results = evaluate(register_dataset, CASE_A_GT, CASE_A_DETS, metadata={"year": year})
    assert results["AP50"] == pytest.approx(expected)


def test_difficult_boxes_are_neither_tp_nor_fp(register_dataset):
    # Case A plus a difficult box in image "a", hit by the top-scoring detection and by another:
    # both are ignored and the box is not counted in recall, so the AP stays 5/9.
    gt = [record("a", [[0, 0, 10, 10], [60, 60, 80, 80]], difficult=[False, True]), CASE_A_GT[1]]
    dets = CASE_A_DETS + [("a", [60, 60, 80, 80], 0.95, 0), ("a", [61, 60, 80, 80], 0.5, 0)]
    assert evaluate(register_dataset, gt, dets, use_07_metric=False)["AP50"] == pytest.approx(5 / 9)
    # The same box, not difficult: 0.95 is a TP, npos = 4, and the 0.5 duplicate a FP.
    #   recall 1/4, 2/4, 2/4, 3/4, 3/4, 3/4; precision 1, 1, 2/3, 3/4, 3/5, 1/2 -> envelope
    #   1 up to 1/2 and 3/4 up to 3/4: 1/2 + 1/4 * 3/4 = 11/16.
    gt_easy = [record("a", [[0, 0, 10, 10], [60, 60, 80, 80]]), CASE_A_GT[1]]
    assert evaluate(register_dataset, gt_easy, dets, use_07_metric=False)["AP50"] == pytest.approx(11 / 16)


def test_iou_of_exactly_half_is_a_miss(register_dataset):
    # GT XML box (1, 1, 10, 10) is (0, 0, 10, 10) here. A detection covering half of it has the
    # devkit IoU (5 * 10) / (10 * 10) = 0.5 exactly, which is not > 0.5. Forgetting to add 1 back
    # to x0, y0 would give (6 * 11) / (11 * 11) = 0.545 and count it.
    gt = [record("a", [[0, 0, 10, 10]])]
    assert evaluate(register_dataset, gt, [("a", [0, 0, 5, 10], 0.9, 0)])["AP50"] == 0.0
    assert evaluate(register_dataset, gt, [("a", [0, 0, 5.2, 10], 0.9, 0)])["AP50"] == pytest.approx(1.0)


def test_duplicate_of_a_matched_box_is_a_fp_even_if_another_box_fits(register_dataset):
    # Devkit rule: a detection is judged against its single best box. The 0.8 detection overlaps
    # box 1 (IoU 90/110) best, already taken, so it is a FP although box 2 (IoU 70/130 > 0.5) is free.
    # recall 1/2, 1/2; precision 1, 1/2: AP = 1/2.
    gt = [record("a", [[0, 0, 10, 10], [4, 0, 14, 10]])]
    dets = [("a", [0, 0, 10, 10], 0.9, 0), ("a", [1, 0, 11, 10], 0.8, 0)]
    assert evaluate(register_dataset, gt, dets, use_07_metric=False)["AP50"] == pytest.approx(0.5)


def test_class_without_ground_truth_is_nan_and_left_out(register_dataset):
    results = evaluate(
        register_dataset, CASE_A_GT, CASE_A_DETS, classes=("thing", "ghost"), use_07_metric=False
    )
    assert math.isnan(results["AP50-ghost"])
    assert results["AP50"] == pytest.approx(5 / 9)


def test_voc_ap_on_known_curves():
    rec, prec = np.array([0.5, 1.0]), np.array([1.0, 0.5])
    assert voc_ap(rec, prec, use_07_metric=False) == pytest.approx(0.5 * 1.0 + 0.5 * 0.5)
    # 11-point: t = 0..0.5 -> 1 (6 points), t = 0.6..1.0 -> 0.5 (5 points).
    assert voc_ap(rec, prec, use_07_metric=True) == pytest.approx((6 + 2.5) / 11)
    assert voc_ap(np.zeros(0), np.zeros(0), use_07_metric=False) == 0.0


# --------------------------------------------------------------------------------------------
# A slow, literal re-implementation of the devkit's voc_eval, written independently.
# --------------------------------------------------------------------------------------------


def slow_voc_eval(gt_dicts, dets, cls, iou_thresh, use_07):
    recs = {}
    npos = 0
    for d in gt_dicts:
        objs = []
        for a in d["annotations"]:
            if a["category_id"] == cls:
                x0, y0, x1, y1 = a["bbox"]
                objs.append({"bbox": [x0 + 1, y0 + 1, x1, y1], "difficult": a["difficult"], "det": False})
                if not a["difficult"]:
                    npos += 1
        recs[d["image_id"]] = objs
    mine = sorted([x for x in dets if x[3] == cls], key=lambda x: -x[2])
    tp, fp = [], []
    for image_id, box, _, _ in mine:
        bx0, by0, bx1, by1 = box[0] + 1, box[1] + 1, box[2], box[3]
        ovmax, jmax = -math.inf, -1
        for j, obj in enumerate(recs[image_id]):
            gx0, gy0, gx1, gy1 = obj["bbox"]
            iw = max(min(bx1, gx1) - max(bx0, gx0) + 1, 0)
            ih = max(min(by1, gy1) - max(by0, gy0) + 1, 0)
            inter = iw * ih
            union = (bx1 - bx0 + 1) * (by1 - by0 + 1) + (gx1 - gx0 + 1) * (gy1 - gy0 + 1) - inter
            if inter / union > ovmax:
                ovmax, jmax = inter / union, j
        if ovmax > iou_thresh:
            obj = recs[image_id][jmax]
            if obj["difficult"]:
                continue
            if not obj["det"]:
                obj["det"] = True
                tp.append(1)
                fp.append(0)
            else:
                tp.append(0)
                fp.append(1)
        else:
            tp.append(0)
            fp.append(1)
    ctp = cfp = 0
    rec, prec = [], []
    for t, f in zip(tp, fp):
        ctp, cfp = ctp + t, cfp + f
        rec.append(ctp / npos)
        prec.append(ctp / (ctp + cfp))
    if use_07:
        ap = 0.0
        for t in np.arange(0.0, 1.1, 0.1):
            ps = [p for r, p in zip(rec, prec) if r >= t]
            ap += (max(ps) if ps else 0.0) / 11
        return ap
    mrec, mpre = [0.0] + rec + [1.0], [0.0] + prec + [0.0]
    for i in range(len(mpre) - 2, -1, -1):
        mpre[i] = max(mpre[i], mpre[i + 1])
    return sum((mrec[i + 1] - mrec[i]) * mpre[i + 1] for i in range(len(mrec) - 1) if mrec[i + 1] != mrec[i])


def random_voc_set(seed, num_images=12, num_classes=3):
    rng = np.random.default_rng(seed)
    gt_dicts, dets = [], []
    for i in range(num_images):
        image_id = f"2007_{i:06d}"
        boxes, classes, difficult = [], [], []
        for _ in range(int(rng.integers(0, 5))):
            x0, y0 = rng.integers(0, 150, size=2)
            w, h = rng.integers(8, 80, size=2)
            boxes.append([float(x0), float(y0), float(x0 + w), float(y0 + h)])
            classes.append(int(rng.integers(num_classes)))
            difficult.append(bool(rng.uniform() < 0.15))
        gt_dicts.append(record(image_id, boxes, classes, difficult, size=(240, 240)))
        for box, cls in zip(boxes, classes):
            for _ in range(int(rng.integers(0, 3))):  # misses, hits and duplicates
                size = np.array([box[2] - box[0], box[3] - box[1]] * 2)
                jittered = (np.array(box) + rng.normal(0, 0.12, 4) * size).tolist()
                label = cls if rng.uniform() < 0.8 else int(rng.integers(num_classes))
                dets.append((image_id, jittered, float(rng.uniform()), label))
        for _ in range(int(rng.integers(0, 3))):
            x0, y0 = rng.uniform(0, 200, size=2)
            dets.append(
                (image_id, [x0, y0, x0 + 30, y0 + 25], float(rng.uniform()), int(rng.integers(num_classes)))
            )
    return gt_dicts, dets


@pytest.mark.parametrize("use_07", [True, False], ids=["voc07", "area"])
@pytest.mark.parametrize("seed", [0, 1])
def test_matches_slow_reference(register_dataset, use_07, seed):
    gt_dicts, dets = random_voc_set(seed)
    classes = ["c0", "c1", "c2"]
    results = evaluate(register_dataset, gt_dicts, dets, classes=classes, use_07_metric=use_07)

    per_threshold = []
    for thresh in np.linspace(0.5, 0.95, 10):
        aps = [slow_voc_eval(gt_dicts, dets, c, thresh, use_07) for c in range(len(classes))]
        per_threshold.append(np.mean(aps))
        if thresh == 0.5:
            for c, ap in zip(classes, aps):
                assert results[f"AP50-{c}"] == pytest.approx(ap, abs=1e-12), c
    assert results["AP50"] == pytest.approx(per_threshold[0], abs=1e-12)
    assert results["AP75"] == pytest.approx(per_threshold[5], abs=1e-12)
    assert results["AP"] == pytest.approx(np.mean(per_threshold), abs=1e-12)
    assert 0.1 < results["AP50"] < 0.95  # a mix of hits and errors


def test_registered():
    assert EVALUATOR_REGISTRY.get("PascalVOCDetectionEvaluator") is PascalVOCDetectionEvaluator
