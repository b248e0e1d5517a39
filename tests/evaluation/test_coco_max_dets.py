"""COCOEvaluator on crowded images: the detections scored per image follow the model, not a fixed 100."""

from __future__ import annotations

import contextlib
import io
import logging

import numpy as np
import pytest
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from rcnnzoo.evaluation import COCOEvaluator, convert_to_coco_dict
from rcnnzoo.structures import Boxes, BoxMode, Instances

CROWD = 300  # objects in one image, three times pycocotools' default limit of 100


def grid_boxes(count: int, columns: int = 20, size: int = 16, step: int = 20) -> list[list[float]]:
    """``count`` disjoint XYXY boxes in rows of ``columns``."""
    return [
        [float(c * step), float(r * step), float(c * step + size), float(r * step + size)]
        for r, c in (divmod(i, columns) for i in range(count))
    ]


def crowded_dataset(register_dataset, classes_of: list[int], num_classes: int = 1) -> str:
    boxes = grid_boxes(len(classes_of))
    anns = [
        {"bbox": b, "bbox_mode": BoxMode.XYXY_ABS, "category_id": c, "iscrowd": 0}
        for b, c in zip(boxes, classes_of)
    ]
    record = {"file_name": "crowd.jpg", "height": 400, "width": 400, "image_id": 1, "annotations": anns}
    return register_dataset([record], thing_classes=[f"class{k}" for k in range(num_classes)])


def perfect_predictions(classes_of: list[int]) -> Instances:
    n = len(classes_of)
    inst = Instances((400, 400))
    inst.pred_boxes = Boxes(torch.tensor(grid_boxes(n)))
    inst.scores = torch.linspace(0.99, 0.5, n)
    inst.pred_classes = torch.tensor(classes_of)
    return inst


def evaluate(name: str, instances: Instances, **kwargs) -> tuple[dict[str, float], list[str]]:
    """bbox metrics, and the warnings the evaluator logged."""
    warnings: list[str] = []

    class _Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.levelno >= logging.WARNING:
                warnings.append(record.getMessage())

    log = logging.getLogger("rcnnzoo.evaluation.coco_evaluation")
    handler = _Collect()
    log.addHandler(handler)
    try:
        evaluator = COCOEvaluator(name, distributed=False, **kwargs)
        evaluator.reset()
        evaluator.process([{"image_id": 1}], [{"instances": instances}])
        return evaluator.evaluate()["bbox"], warnings
    finally:
        log.removeHandler(handler)


def test_300_perfect_detections_score_one(register_dataset) -> None:
    classes = [0] * CROWD
    name = crowded_dataset(register_dataset, classes)
    metrics, warnings = evaluate(name, perfect_predictions(classes))
    for key in ("AP", "AP50", "AP75", "APs", "AP-class0"):
        assert metrics[key] == pytest.approx(1.0), key
    assert warnings == []


def test_a_limit_below_the_crowd_cuts_and_warns(register_dataset) -> None:
    classes = [0] * CROWD
    name = crowded_dataset(register_dataset, classes)
    metrics, warnings = evaluate(name, perfect_predictions(classes), max_dets_per_image=100)
    # Recall 100/300 at precision 1: pycocotools' recall points 0.00..0.33 (34 of 101) are reached.
    assert metrics["AP"] == pytest.approx(34 / 101)
    (message,) = warnings
    assert "max_dets_per_image=100" in message and "1 of 1 images" in message and "300" in message


def test_matches_pycocotools_with_the_same_limit(register_dataset) -> None:
    # 300 detections, a third of them wrong class: the AP must be pycocotools' own at maxDets 300.
    classes = [k % 3 for k in range(CROWD)]
    name = crowded_dataset(register_dataset, classes, num_classes=3)
    predicted = perfect_predictions([(c + 1) % 3 if k % 4 == 0 else c for k, c in enumerate(classes)])
    metrics, _ = evaluate(name, predicted)

    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = convert_to_coco_dict(name)
        gt.createIndex()
        xywh = BoxMode.convert(predicted.pred_boxes.tensor, BoxMode.XYXY_ABS, BoxMode.XYWH_ABS).tolist()
        results = [
            {"image_id": 1, "category_id": int(c), "bbox": b, "score": float(s)}
            for b, s, c in zip(xywh, predicted.scores.tolist(), predicted.pred_classes.tolist())
        ]
        ev = COCOeval(gt, gt.loadRes(results), "bbox")
        ev.params.maxDets = [1, 10, CROWD]
        ev.evaluate()
        ev.accumulate()
    precision = ev.eval["precision"][:, :, :, 0, -1]
    assert metrics["AP"] == pytest.approx(float(np.mean(precision[precision > -1])), abs=1e-12)
    assert 0.3 < metrics["AP"] < 0.95


def test_limit_applies_per_category_so_no_cut_no_warning(register_dataset) -> None:
    # 150 detections in one image, 75 per category: a limit of 100 drops none of them.
    classes = [k % 2 for k in range(150)]
    name = crowded_dataset(register_dataset, classes, num_classes=2)
    metrics, warnings = evaluate(name, perfect_predictions(classes), max_dets_per_image=100)
    assert metrics["AP"] == pytest.approx(1.0)
    assert warnings == []


def test_invalid_limit_is_refused() -> None:
    with pytest.raises(ValueError, match="max_dets_per_image"):
        COCOEvaluator("anything", max_dets_per_image=0)
