"""ProposalEvaluator: AR and recall on hand-computed cases, and equal to a slow reference on random ones."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from rcnnzoo.evaluation import ProposalEvaluator, match_proposals_to_ground_truth
from rcnnzoo.structures import Boxes, BoxMode, Instances

THRESHOLDS = [0.5 + 0.05 * i for i in range(10)]


def _annotation(xyxy, iscrowd=0) -> dict:
    x0, y0, x1, y1 = xyxy
    return {
        "bbox": [x0, y0, x1 - x0, y1 - y0],
        "bbox_mode": BoxMode.XYWH_ABS,
        "category_id": 0,
        "iscrowd": iscrowd,
    }


def _image(image_id, gt, size=(100, 100), crowd=()) -> dict:
    h, w = size
    annotations = [_annotation(b) for b in gt] + [_annotation(b, iscrowd=1) for b in crowd]
    return {
        "image_id": image_id,
        "file_name": f"{image_id}.png",
        "height": h,
        "width": w,
        "annotations": annotations,
    }


def _output(boxes, scores, size=(100, 100), **extra) -> dict:
    proposals = Instances(
        size,
        proposal_boxes=Boxes(torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)),
        objectness_logits=torch.tensor(scores, dtype=torch.float32),
    )
    return {"proposals": proposals, **extra}


def _evaluate(register_dataset, images, outputs, limits=(1, 2, 1000)) -> dict[str, float]:
    name = register_dataset(images, thing_classes=["thing"])
    evaluator = ProposalEvaluator(name, limits=limits)
    evaluator.reset()
    for image, output in zip(images, outputs):
        evaluator.process([{k: image[k] for k in ("image_id", "height", "width")}], [output])
    results = evaluator.evaluate()
    assert list(results) == ["box_proposals"]
    return results["box_proposals"]


def test_two_objects_with_known_ious(register_dataset):
    # gt A = 10x10 at the origin, B = 20x20; p1 covers A with IoU 100/120, p2 covers B with IoU 400/600
    images = [_image(1, [[0, 0, 10, 10], [50, 50, 70, 70]], crowd=[[0, 0, 100, 100]])]
    outputs = [_output([[50, 50, 70, 80], [0, 0, 10, 12], [80, 0, 90, 5]], [0.5, 0.9, 0.1])]
    m = _evaluate(register_dataset, images, outputs)
    # A (0.833) passes the thresholds 0.50..0.80 (7 of 10), B (0.667) 0.50..0.65 (4 of 10)
    assert m["AR@1000"] == pytest.approx((7 + 4) / 20)
    assert m["AR@2"] == pytest.approx((7 + 4) / 20)
    assert m["AR@1"] == pytest.approx(7 / 20)  # only the best-scored proposal, p1, counts
    assert m["R@0.5@1000"] == 1.0 and m["R@0.7@1000"] == 0.5
    # both objects are small (areas 100 and 400 < 32^2); the crowd region is not an object
    assert m["ARs@1000"] == pytest.approx(11 / 20)
    assert math.isnan(m["ARm@1000"]) and math.isnan(m["ARl@1000"])


def test_a_proposal_counts_for_one_object_only(register_dataset):
    # one proposal equal to A and overlapping B a lot: B gets nothing
    images = [_image(1, [[0, 0, 40, 40], [0, 0, 40, 36]])]
    m = _evaluate(register_dataset, images, [_output([[0, 0, 40, 40]], [1.0])])
    assert m["R@0.5@1000"] == 0.5 and m["AR@1000"] == pytest.approx(0.5)
    assert match_proposals_to_ground_truth(np.array([[1.0, 0.9]])).tolist() == [1.0, 0.0]
    # the greedy choice: the best pair first, even where another assignment would cover both
    assert match_proposals_to_ground_truth(np.array([[0.9, 0.8], [0.85, 0.0]])).tolist() == [0.9, 0.0]


def test_sizes_and_proposals_of_the_resized_image(register_dataset):
    # a small and a large object in a 200x200 image; the proposals come from the model's 100x100 input
    images = [_image(1, [[0, 0, 10, 10], [40, 40, 180, 180]], size=(200, 200))]
    outputs = [_output([[20, 20, 90, 90], [50, 50, 60, 60]], [1.0, 0.0], size=(100, 100))]
    m = _evaluate(register_dataset, images, outputs)
    assert m["ARl@1000"] == 1.0 and m["ARs@1000"] == 0.0 and math.isnan(m["ARm@1000"])
    assert m["AR@1000"] == 0.5


def test_detector_outputs_with_proposals_are_accepted_and_others_refused(register_dataset):
    images = [_image(1, [[0, 0, 10, 10]])]
    m = _evaluate(register_dataset, images, [_output([[0, 0, 10, 10]], [0.0], instances="detections")])
    assert m["AR@1000"] == 1.0
    name = register_dataset(images, thing_classes=["thing"])
    evaluator = ProposalEvaluator(name)
    with pytest.raises(KeyError, match="'proposals'"):
        evaluator.process([{"image_id": 1, "height": 100, "width": 100}], [{"instances": None}])


# ------------------------------------------------------------------------------- slow reference


def _iou(a, b) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _reference(images, outputs, limits) -> dict[str, float]:
    """Recall by brute force: every pair's IoU, pairs taken best first while both are free."""
    ranges = {"": (0, math.inf), "s": (0, 32**2), "m": (32**2, 96**2), "l": (96**2, math.inf)}
    settings = [("", k) for k in limits] + [(a, max(limits)) for a in "sml"]
    matched = {s: [] for s in settings}
    for image, output in zip(images, outputs):
        gt = [
            [a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2], a["bbox"][1] + a["bbox"][3]]
            for a in image["annotations"]
            if not a["iscrowd"]
        ]
        scores = output["proposals"].objectness_logits.tolist()
        boxes = output["proposals"].proposal_boxes.tensor.tolist()
        ranked = [b for _, b in sorted(zip(scores, boxes), key=lambda t: -t[0])]
        for area, limit in settings:
            low, high = ranges[area]
            objects = [g for g in gt if low <= (g[2] - g[0]) * (g[3] - g[1]) <= high]
            pairs = sorted(
                ((_iou(p, g), i, j) for i, p in enumerate(ranked[:limit]) for j, g in enumerate(objects)),
                reverse=True,
            )
            used_p, best = set(), [0.0] * len(objects)
            for iou, i, j in pairs:
                if i not in used_p and best[j] == 0.0 and iou > 0:
                    used_p.add(i)
                    best[j] = iou
            matched[(area, limit)].extend(best)
    out = {}
    for (area, limit), ious in matched.items():
        recalls = [sum(v >= t - 1e-12 for v in ious) / len(ious) for t in THRESHOLDS] if ious else [math.nan]
        out[f"AR{area}@{limit}"] = sum(recalls) / len(recalls)
        if area == "" and limit == max(limits):
            out[f"R@0.5@{limit}"], out[f"R@0.7@{limit}"] = recalls[0], recalls[4]
    return out


def test_equals_a_slow_reference_on_random_cases(register_dataset):
    rng = np.random.default_rng(0)
    images, outputs = [], []
    for image_id in range(12):
        gt = []
        for _ in range(rng.integers(0, 6)):
            xy = rng.uniform(0, 150, 2)
            gt.append([*xy, *(xy + rng.uniform(4, 130, 2))])
        images.append(_image(image_id, gt, size=(300, 300)))
        # proposals: noisy copies of the objects and random boxes
        props = [np.asarray(g) + rng.normal(0, 6, 4) for g in gt for _ in range(3)]
        for _ in range(rng.integers(0, 30)):
            xy = rng.uniform(0, 200, 2)
            props.append(np.concatenate([xy, xy + rng.uniform(2, 100, 2)]))
        props = [np.clip(np.sort(p.reshape(2, 2), axis=0).reshape(-1), 0, 300) for p in props]
        props = [p for p in props if (p[2:] > p[:2] + 1).all()]
        outputs.append(
            _output(
                np.asarray(props).reshape(-1, 4).tolist(), rng.normal(size=len(props)).tolist(), (300, 300)
            )
        )
    limits = (3, 10, 50)
    got = _evaluate(register_dataset, images, outputs, limits=limits)
    expected = _reference(images, outputs, limits)
    assert set(got) == set(expected)
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, abs=1e-6, nan_ok=True), key
    assert 0 < got["AR@3"] < got["AR@50"] < 1  # the case is neither trivial nor hopeless
