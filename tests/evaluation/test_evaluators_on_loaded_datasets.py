"""Evaluators on datasets registered by rcnnzoo.data's own COCO json and VOC xml loaders."""

from __future__ import annotations

import json
import uuid

import pytest
import torch
from _synthetic_detections import LookupModel, as_loader

from rcnnzoo.data import DatasetCatalog, MetadataCatalog, register_coco_instances, register_pascal_voc
from rcnnzoo.evaluation import COCOEvaluator, PascalVOCDetectionEvaluator, inference_on_dataset
from rcnnzoo.structures import Boxes, Instances


@pytest.fixture
def dataset_name():
    name = f"loaded_{uuid.uuid4().hex[:8]}"
    yield name
    if name in DatasetCatalog:
        DatasetCatalog.remove(name)
    if name in MetadataCatalog:
        MetadataCatalog.remove(name)


def detection(boxes, classes, size=(100, 120)):
    return Instances(
        size,
        pred_boxes=Boxes(torch.tensor(boxes, dtype=torch.float32)),
        scores=torch.linspace(0.9, 0.5, len(boxes)),
        pred_classes=torch.tensor(classes, dtype=torch.int64),
    )


def test_coco_json_dataset_with_lazily_set_classes(tmp_path, dataset_name):
    coco = {
        "images": [{"id": 11, "file_name": "a.jpg", "height": 100, "width": 120}],
        "annotations": [
            {"id": 1, "image_id": 11, "category_id": 5, "bbox": [10, 10, 30, 40], "area": 1200, "iscrowd": 0},
            {"id": 2, "image_id": 11, "category_id": 1, "bbox": [60, 20, 50, 50], "area": 2500, "iscrowd": 0},
        ],
        "categories": [{"id": 1, "name": "one"}, {"id": 5, "name": "five"}],
    }
    json_file = tmp_path / "instances.json"
    json_file.write_text(json.dumps(coco))
    register_coco_instances(dataset_name, {}, str(json_file), str(tmp_path))
    # The class names are only known once the json is read; the evaluator must cope.
    assert getattr(MetadataCatalog.get(dataset_name), "thing_classes", None) is None
    evaluator = COCOEvaluator(dataset_name, output_dir=str(tmp_path / "out"))

    # Contiguous ids: "one" (dataset id 1) is 0, "five" (dataset id 5) is 1.
    model = LookupModel({11: detection([[10, 10, 40, 50], [60, 20, 110, 70]], [1, 0])})
    inputs = [[{"image_id": 11, "height": 100, "width": 120, "file_name": "a.jpg"}]]
    results = inference_on_dataset(model, inputs, evaluator, progress=False)["bbox"]
    assert results["AP"] == pytest.approx(1.0)
    assert results["AP-one"] == pytest.approx(1.0) and results["AP-five"] == pytest.approx(1.0)
    saved = json.loads((tmp_path / "out" / "coco_instances_results.json").read_text())
    assert [r["category_id"] for r in saved] == [5, 1]


def write_voc(root, image_id, objects, size=(100, 120)):
    """objects: (name, xmin, ymin, xmax, ymax, difficult) in the XML's 1-based inclusive pixels."""
    (root / "Annotations").mkdir(parents=True, exist_ok=True)
    (root / "ImageSets" / "Main").mkdir(parents=True, exist_ok=True)
    objs = "".join(
        f"<object><name>{n}</name><difficult>{d}</difficult><bndbox><xmin>{x0}</xmin><ymin>{y0}</ymin>"
        f"<xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox></object>"
        for n, x0, y0, x1, y1, d in objects
    )
    xml = (
        f"<annotation><filename>{image_id}.jpg</filename><size><width>{size[1]}</width>"
        f"<height>{size[0]}</height><depth>3</depth></size>{objs}</annotation>"
    )
    (root / "Annotations" / f"{image_id}.xml").write_text(xml)
    with open(root / "ImageSets" / "Main" / "test.txt", "a") as f:
        f.write(image_id + "\n")


def test_voc_xml_dataset_end_to_end(tmp_path, dataset_name):
    # XML box (1, 1, 10, 10) covers 10 x 10 pixels; it is [0, 0, 10, 10] in rcnnzoo coordinates.
    write_voc(
        tmp_path, "000001", [("cat", 1, 1, 10, 10, 0), ("dog", 31, 31, 60, 60, 0), ("dog", 71, 11, 90, 30, 1)]
    )
    register_pascal_voc(dataset_name, str(tmp_path), "test", 2007, class_names=["cat", "dog"])
    dicts = DatasetCatalog.get(dataset_name)
    assert dicts[0]["annotations"][0]["bbox"] == [0.0, 0.0, 10.0, 10.0]

    # The cat: exact (TP). The dog: one exact hit (TP) and one on the difficult dog (ignored).
    exact = detection([[0, 0, 10, 10], [30, 30, 60, 60], [70, 10, 90, 30]], [0, 1, 1])
    results = inference_on_dataset(
        LookupModel({"000001": exact}),
        as_loader(dicts),
        PascalVOCDetectionEvaluator(dataset_name),
        progress=False,
    )["bbox"]
    assert results["AP50-cat"] == pytest.approx(1.0) and results["AP50-dog"] == pytest.approx(1.0)

    # A cat detection covering exactly half the box: IoU 0.5 is not > 0.5, so it is a miss.
    half = detection([[0, 0, 5, 10], [30, 30, 60, 60]], [0, 1])
    results = inference_on_dataset(
        LookupModel({"000001": half}),
        as_loader(dicts),
        PascalVOCDetectionEvaluator(dataset_name),
        progress=False,
    )["bbox"]
    assert results["AP50-cat"] == 0.0 and results["AP50"] == pytest.approx(0.5)
