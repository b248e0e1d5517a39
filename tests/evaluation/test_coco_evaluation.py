"""COCOEvaluator against pycocotools run directly on hand-built COCO json."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import math

import numpy as np
import pycocotools.mask as mask_util
import pytest
import torch
from _synthetic_detections import (
    CLASSES,
    DATASET_IDS,
    LookupModel,
    as_loader,
    ground_truth_predictions,
    make_dataset_dicts,
    noisy_predictions,
)
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from rcnnzoo.evaluation import (
    EVALUATOR_REGISTRY,
    COCOEvaluator,
    convert_to_coco_dict,
    inference_on_dataset,
    instances_to_coco_json,
)
from rcnnzoo.structures import Boxes, BoxMode, Instances

SUMMARY = ["AP", "AP50", "AP75", "APs", "APm", "APl"]


def hand_built_coco_gt(dicts: list[dict]) -> dict:
    """The COCO json of the synthetic set, written out independently of convert_to_coco_dict."""
    images, annotations = [], []
    for d in dicts:
        images.append(
            {"id": d["image_id"], "width": d["width"], "height": d["height"], "file_name": d["file_name"]}
        )
        for a in d["annotations"]:
            if a["bbox_mode"] == BoxMode.XYWH_ABS:
                x, y, w, h = a["bbox"]
            else:
                x, y, w, h = (
                    a["bbox"][0],
                    a["bbox"][1],
                    a["bbox"][2] - a["bbox"][0],
                    a["bbox"][3] - a["bbox"][1],
                )
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": d["image_id"],
                    "category_id": DATASET_IDS[a["category_id"]],
                    "bbox": [x, y, w, h],
                    "area": w * h,
                    "iscrowd": a["iscrowd"],
                }
            )
    categories = [{"id": i, "name": n} for i, n in zip(DATASET_IDS, CLASSES)]
    return {"images": images, "annotations": annotations, "categories": categories}


def direct_results(predictions: dict[int, Instances]) -> list[dict]:
    """COCO results entries written plainly in the test."""
    results = []
    for image_id, inst in predictions.items():
        t = inst.pred_boxes.tensor
        for box, score, cls in zip(t.tolist(), inst.scores.tolist(), inst.pred_classes.tolist()):
            x0, y0, x1, y1 = box
            w = float(torch.tensor(x1, dtype=torch.float32) - torch.tensor(x0, dtype=torch.float32))
            h = float(torch.tensor(y1, dtype=torch.float32) - torch.tensor(y0, dtype=torch.float32))
            results.append(
                {
                    "image_id": image_id,
                    "category_id": DATASET_IDS[cls],
                    "bbox": [x0, y0, w, h],
                    "score": score,
                }
            )
    return results


def direct_cocoeval(gt_dict: dict, results: list[dict], iou_type: str = "bbox") -> COCOeval:
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = json.loads(json.dumps(gt_dict))
        gt.createIndex()
        dt = gt.loadRes(json.loads(json.dumps(results)))
        ev = COCOeval(gt, dt, iou_type)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev


def register_synthetic(register_dataset, dicts, tmp_path=None, json_file=False) -> str:
    metadata = {
        "thing_classes": CLASSES,
        "thing_dataset_id_to_contiguous_id": {d: k for k, d in enumerate(DATASET_IDS)},
    }
    if json_file:
        path = tmp_path / "instances_gt.json"
        path.write_text(json.dumps(hand_built_coco_gt(dicts)))
        metadata["json_file"] = str(path)
    return register_dataset(dicts, **metadata)


def run(model, dicts, evaluator):
    return inference_on_dataset(model, as_loader(dicts), evaluator, progress=False)


def test_ground_truth_as_predictions_scores_one(register_dataset, tmp_path):
    dicts = make_dataset_dicts()
    name = register_synthetic(register_dataset, dicts)
    results = run(
        LookupModel(ground_truth_predictions(dicts)), dicts, COCOEvaluator(name, output_dir=str(tmp_path))
    )
    bbox = results["bbox"]
    for metric in SUMMARY + [f"AP-{c}" for c in CLASSES]:
        assert bbox[metric] == pytest.approx(1.0), metric


@pytest.mark.parametrize("use_json_file", [True, False], ids=["json_file", "converted"])
def test_matches_direct_pycocotools(register_dataset, tmp_path, use_json_file):
    dicts = make_dataset_dicts(num_images=10, seed=3)
    predictions = noisy_predictions(dicts, seed=4)
    name = register_synthetic(register_dataset, dicts, tmp_path, json_file=use_json_file)
    results = run(LookupModel(predictions), dicts, COCOEvaluator(name, output_dir=str(tmp_path / "out")))[
        "bbox"
    ]

    ev = direct_cocoeval(hand_built_coco_gt(dicts), direct_results(predictions))
    for i, metric in enumerate(SUMMARY):
        assert results[metric] == pytest.approx(ev.stats[i], abs=1e-12), metric
    # A real mix of right and wrong detections, not a degenerate 0 or 1.
    assert 0.2 < results["AP"] < 0.9 and results["AP50"] > results["AP75"]

    precision = ev.eval["precision"]  # [T, R, K, A, M]
    for k, cat_id in enumerate(ev.params.catIds):
        p = precision[:, :, k, 0, -1]
        expected = float(np.mean(p[p > -1]))
        assert results[f"AP-{CLASSES[DATASET_IDS.index(cat_id)]}"] == pytest.approx(expected, abs=1e-12)


def test_converted_ground_truth_is_cached_and_equivalent(register_dataset, tmp_path):
    dicts = make_dataset_dicts(num_images=4, seed=5)
    name = register_synthetic(register_dataset, dicts)
    converted = convert_to_coco_dict(name)
    expected = hand_built_coco_gt(dicts)
    assert converted["categories"] == expected["categories"]
    assert [a["category_id"] for a in converted["annotations"]] == [
        a["category_id"] for a in expected["annotations"]
    ]
    assert min(a["id"] for a in converted["annotations"]) == 1  # COCOeval treats id 0 as "unmatched"
    for got, want in zip(converted["annotations"], expected["annotations"]):
        assert got["bbox"] == pytest.approx(want["bbox"])
        assert got["area"] == pytest.approx(want["area"])
        assert got["iscrowd"] == want["iscrowd"]

    evaluator = COCOEvaluator(name, output_dir=str(tmp_path))
    run(LookupModel(ground_truth_predictions(dicts)), dicts, evaluator)
    cache = tmp_path / f"{name}_coco_format.json"
    assert json.loads(cache.read_text())["annotations"] == json.loads(json.dumps(converted["annotations"]))
    # Atomic writes leave no temporary files behind.
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp")]


def test_category_ids_round_trip_to_dataset_ids(register_dataset, tmp_path):
    dicts = make_dataset_dicts(num_images=4, seed=7)
    predictions = noisy_predictions(dicts, seed=8)
    name = register_synthetic(register_dataset, dicts)
    run(LookupModel(predictions), dicts, COCOEvaluator(name, output_dir=str(tmp_path)))

    saved = json.loads((tmp_path / "coco_instances_results.json").read_text())
    expected = direct_results(predictions)
    assert len(saved) == len(expected) > 0
    assert [r["category_id"] for r in saved] == [r["category_id"] for r in expected]
    assert {r["category_id"] for r in saved} <= set(DATASET_IDS)
    assert [r["image_id"] for r in saved] == [r["image_id"] for r in expected]
    assert np.allclose([r["bbox"] for r in saved], [r["bbox"] for r in expected], atol=1e-4)


def test_instances_to_coco_json_layout():
    inst = Instances(
        (50, 60),
        pred_boxes=Boxes(torch.tensor([[10.0, 20.0, 30.0, 25.0]])),
        scores=torch.tensor([0.5]),
        pred_classes=torch.tensor([1]),
    )
    assert instances_to_coco_json(inst, 9, {0: 3, 1: 7}) == [
        {"image_id": 9, "category_id": 7, "bbox": [10.0, 20.0, 20.0, 5.0], "score": 0.5}
    ]
    assert instances_to_coco_json(inst[:0], 9) == []


def test_empty_predictions_give_zero_and_warn(register_dataset, tmp_path, caplog):
    dicts = make_dataset_dicts(num_images=5, seed=9)
    name = register_synthetic(register_dataset, dicts)
    empty = {
        d["image_id"]: Instances(
            (d["height"], d["width"]),
            pred_boxes=Boxes(torch.zeros(0, 4)),
            scores=torch.zeros(0),
            pred_classes=torch.zeros(0, dtype=torch.int64),
        )
        for d in dicts
    }
    with caplog.at_level(logging.WARNING, logger="rcnnzoo.evaluation"):
        results = run(LookupModel(empty), dicts, COCOEvaluator(name, output_dir=str(tmp_path)))["bbox"]
    for metric in SUMMARY + [f"AP-{c}" for c in CLASSES]:
        assert results[metric] == 0.0, metric
    assert any("no detections" in r.message for r in caplog.records)
    assert json.loads((tmp_path / "coco_instances_results.json").read_text()) == []


def test_undefined_area_range_is_nan(register_dataset):
    # Only one large box: there are no small or medium objects to measure.
    dicts = [
        {
            "file_name": "a.jpg",
            "height": 200,
            "width": 200,
            "image_id": 1,
            "annotations": [
                {"bbox": [0, 0, 150, 150], "bbox_mode": BoxMode.XYXY_ABS, "category_id": 0, "iscrowd": 0}
            ],
        }
    ]
    name = register_dataset(dicts, thing_classes=["thing"])
    results = run(LookupModel(ground_truth_predictions(dicts)), dicts, COCOEvaluator(name))["bbox"]
    assert results["AP"] == pytest.approx(1.0) and results["APl"] == pytest.approx(1.0)
    assert math.isnan(results["APs"]) and math.isnan(results["APm"])


def test_evaluates_only_the_images_it_saw(register_dataset):
    # Running on half the dataset must not count the other half's objects as missed.
    dicts = make_dataset_dicts(num_images=6, seed=11)
    name = register_synthetic(register_dataset, dicts)
    results = run(LookupModel(ground_truth_predictions(dicts)), dicts[:3], COCOEvaluator(name))["bbox"]
    assert results["AP50"] == pytest.approx(1.0)


def test_max_dets_per_image_limits_detections(register_dataset):
    # pycocotools applies the limit per image and category: three perfect detections of one
    # class in one image, with a limit of 1, can reach only a third of the objects.
    boxes = [[10, 10, 60, 60], [100, 10, 150, 60], [10, 100, 60, 150]]
    anns = [{"bbox": b, "bbox_mode": BoxMode.XYXY_ABS, "category_id": 0, "iscrowd": 0} for b in boxes]
    dicts = [{"file_name": "a.jpg", "height": 200, "width": 200, "image_id": 1, "annotations": anns}]
    name = register_dataset(dicts, thing_classes=["thing"])
    predictions = ground_truth_predictions(dicts)
    predictions[1].scores = torch.tensor([0.9, 0.8, 0.7])

    default = run(LookupModel(predictions), dicts, COCOEvaluator(name))["bbox"]
    one = run(LookupModel(predictions), dicts, COCOEvaluator(name, max_dets_per_image=1))["bbox"]
    assert default["AP50"] == pytest.approx(1.0)
    # Recall 1/3 at precision 1: 34 of pycocotools' 101 recall points (0.00..0.33) are reached.
    assert one["AP50"] == pytest.approx(34 / 101)
    assert one["AP"] == pytest.approx(34 / 101)


def square_polygon(x0, y0, x1, y1):
    return [[x0, y0, x1, y0, x1, y1, x0, y1]]


# pycocotools.mask.decode trips a numpy 2 DeprecationWarning inside pycocotools itself.
@pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")
def test_segm_perfect_masks_score_one(register_dataset):
    h, w = 80, 100
    boxes = [(10, 10, 40, 50), (50, 20, 95, 70)]
    anns = [
        {
            "bbox": list(b),
            "bbox_mode": BoxMode.XYXY_ABS,
            "category_id": k,
            "iscrowd": 0,
            "segmentation": square_polygon(*b),
        }
        for k, b in enumerate(boxes)
    ]
    dicts = [{"file_name": "m.jpg", "height": h, "width": w, "image_id": 5, "annotations": anns}]
    name = register_dataset(dicts, thing_classes=["a", "b"])
    masks = torch.stack(
        [
            torch.from_numpy(
                mask_util.decode(mask_util.merge(mask_util.frPyObjects(a["segmentation"], h, w)))
            ).bool()
            for a in anns
        ]
    )
    inst = Instances(
        (h, w),
        pred_boxes=Boxes(torch.tensor(boxes, dtype=torch.float32)),
        scores=torch.tensor([0.9, 0.8]),
        pred_classes=torch.tensor([0, 1]),
        pred_masks=masks,
    )
    results = run(LookupModel({5: inst}), dicts, COCOEvaluator(name, tasks=("bbox", "segm")))
    assert results["segm"]["AP"] == pytest.approx(1.0)
    assert results["bbox"]["AP"] == pytest.approx(1.0)

    # Shift one mask by half its width: its IoU drops to ~1/3, so that class scores 0.
    shifted = masks.clone()
    shifted[1] = torch.roll(masks[1], shifts=22, dims=1)
    inst.pred_masks = shifted
    results = run(LookupModel({5: inst}), dicts, COCOEvaluator(name, tasks=("segm",)))
    assert results["segm"]["AP-a"] == pytest.approx(1.0)
    assert results["segm"]["AP-b"] == 0.0


def test_unknown_task_and_registry():
    with pytest.raises(ValueError, match="Did you mean 'segm'"):
        COCOEvaluator("any_dataset", tasks=("segn",))
    assert EVALUATOR_REGISTRY.get("COCOEvaluator") is COCOEvaluator


def test_unknown_image_id_is_an_error(register_dataset):
    dicts = make_dataset_dicts(num_images=2, seed=14)
    name = register_synthetic(register_dataset, dicts)
    predictions = ground_truth_predictions(dicts)
    evaluator = COCOEvaluator(name)
    evaluator.reset()
    evaluator.process([{"image_id": 999}], [{"instances": predictions[100]}])
    with pytest.raises(ValueError, match="not in the ground truth"):
        evaluator.evaluate()


def test_out_of_range_class_is_an_error(register_dataset):
    dicts = make_dataset_dicts(num_images=1, seed=15)
    name = register_synthetic(register_dataset, dicts)
    inst = ground_truth_predictions(dicts)[100]
    inst.pred_classes = torch.full((len(inst),), len(CLASSES))
    evaluator = COCOEvaluator(name)
    evaluator.reset()
    evaluator.process([{"image_id": 100}], [{"instances": inst}])
    with pytest.raises(ValueError, match="has 3 classes"):
        evaluator.evaluate()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_cuda_outputs_give_the_cpu_numbers(register_dataset):
    dicts = make_dataset_dicts(num_images=4, seed=16)
    predictions = noisy_predictions(dicts, seed=17)
    name = register_synthetic(register_dataset, dicts)
    on_cpu = run(LookupModel(predictions), dicts, COCOEvaluator(name))["bbox"]
    on_gpu = {k: v.to("cuda") for k, v in predictions.items()}
    assert run(LookupModel(on_gpu), dicts, COCOEvaluator(name))["bbox"] == pytest.approx(on_cpu, nan_ok=True)
