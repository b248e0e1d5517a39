"""Dataset checks: bad boxes (reported, and handled by get_detection_dataset_dicts), image files,
classes, and anchor coverage on hand-made cases."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from rcnnzoo.data import (
    DatasetCatalog,
    MetadataCatalog,
    check_dataset_dicts,
    check_datasets,
    get_detection_dataset_dicts,
    handle_bad_boxes,
    register_coco_instances,
)
from rcnnzoo.data.checks.anchors import _anchor_levels, _best_anchor_iou
from rcnnzoo.data.checks.annotations import _Annotations
from rcnnzoo.modeling import DefaultAnchorGenerator
from rcnnzoo.structures import Boxes, BoxMode, pairwise_iou

H, W = 48, 64  # every fixture image

# XYWH boxes on a 64x48 (WxH) image, by annotation id
GOOD = {1: [10, 10, 20, 20]}
BAD = {
    2: [5, 5, 0, 10],  # zero width
    3: [50, 10, 30, 20],  # x + w = 80 > 64 (and read as corners, x2 = 30 < x1)
    4: [30, 20, 60, 45],  # x + w, y + h beyond the image; as corners (30, 20, 60, 45) it fits
}
KIND = {2: "degenerate_box", 3: "box_outside_image", 4: "wrong_layout"}


def _write_png(path: Path, h: int = H, w: int = W) -> None:
    assert cv2.imwrite(str(path), np.full((h, w, 3), 128, np.uint8))


def _write_coco(root: Path, images: list[dict], annotations: list[dict], classes=("cat", "dog")) -> Path:
    """A COCO json in ``root``; ``images`` are {"file_name", "id"} with H x W unless given."""
    data = {
        "images": [{"height": H, "width": W, **im} for im in images],
        "annotations": [{"iscrowd": 0, "area": 1.0, **a} for a in annotations],
        "categories": [{"id": i + 1, "name": n} for i, n in enumerate(classes)],
    }
    path = root / "annotations.json"
    path.write_text(json.dumps(data))
    return path


def _register(name: str, catalog_names: list, json_file: Path, image_root: Path) -> None:
    catalog_names.append(name)
    register_coco_instances(name, {}, json_file, image_root)


@pytest.fixture
def boxes_dataset(tmp_path, catalog_names):
    """'checks_boxes': a.png with one good and three bad boxes, b.png with one good box."""
    _write_png(tmp_path / "a.png")
    _write_png(tmp_path / "b.png")
    anns = [{"id": i, "image_id": 1, "bbox": b, "category_id": 1} for i, b in {**GOOD, **BAD}.items()]
    anns.append({"id": 10, "image_id": 2, "bbox": [1, 1, 30, 30], "category_id": 2})
    json_file = _write_coco(
        tmp_path, [{"file_name": "a.png", "id": 1}, {"file_name": "b.png", "id": 2}], anns
    )
    _register("checks_boxes", catalog_names, json_file, tmp_path)
    return "checks_boxes", json_file, tmp_path


def _check(name: str, **kwargs):
    return check_dataset_dicts(
        DatasetCatalog.get(name), name=name, metadata=MetadataCatalog.get(name), **kwargs
    )


# ----------------------------------------------------------------------------- bad boxes


def test_each_bad_box_kind_is_reported_with_file_and_annotation_id(boxes_dataset):
    name, json_file, root = boxes_dataset
    report = _check(name)
    assert not report.ok
    found = {p.annotation_id: p for p in report.problems}
    assert set(found) == set(BAD)
    for ann_id, kind in KIND.items():
        p = found[ann_id]
        assert (p.kind, p.severity) == (kind, "error")
        assert p.file == str(root / "a.png")
        assert p.json_file == str(json_file)
    text = report.format()
    assert str(json_file) in text and "a.png [annotation id=4]" in text
    assert "XYXY written where XYWH is expected" in found[4].message
    assert report.num_images == 2 and report.num_instances == 5
    assert report.instances_per_class == {"cat": 4, "dog": 1}
    json.dumps(report.to_dict())  # JSON-able

    # with a bad-box policy the same boxes are warnings
    lenient = _check(name, bad_boxes="drop")
    assert lenient.ok and {p.severity for p in lenient.problems} == {"warning"}


def test_xyxy_boxes_and_non_finite_boxes():
    d = {
        "file_name": "x.png",
        "height": H,
        "width": W,
        "image_id": 0,
        "annotations": [
            # XYWH numbers in an XYXY dataset: x2 < x1, but (10, 20, 5, 8) fits as (x, y, w, h)
            {"id": 1, "bbox": [10, 20, 5, 8], "bbox_mode": BoxMode.XYXY_ABS, "category_id": 0},
            {"id": 2, "bbox": [0, 0, math.nan, 4], "bbox_mode": BoxMode.XYWH_ABS, "category_id": 0},
            {"id": 3, "bbox": [0, 0, 4], "bbox_mode": BoxMode.XYWH_ABS, "category_id": 0},
            {"id": 4, "bbox": [0, 0, 10, 10], "bbox_mode": BoxMode.XYXY_ABS, "category_id": 0},
            {"id": 5, "bbox": [0.1, 0.1, 0.5, 0.5], "bbox_mode": BoxMode.XYWH_REL, "category_id": 0},
        ],
    }
    report = check_dataset_dicts([d], name="x", metadata={"thing_classes": ["a"]}, read_images="none")
    kinds = {p.annotation_id: p.kind for p in report.problems if p.annotation_id is not None}
    assert kinds == {1: "wrong_layout", 2: "degenerate_box", 3: "degenerate_box"}
    assert "XYWH written where XYXY is expected" in report.problems[0].message


def test_bad_boxes_error_lists_file_and_annotation_ids(boxes_dataset):
    name, json_file, root = boxes_dataset
    with pytest.raises(ValueError) as e:
        get_detection_dataset_dicts(name)
    msg = str(e.value)
    assert str(json_file) in msg and "3 bad boxes" in msg
    for ann_id in BAD:
        assert f"{root / 'a.png'} [annotation id={ann_id}]" in msg
    assert "bad_boxes='drop'" in msg


def test_bad_boxes_error_message_is_capped_with_a_count():
    anns = [
        {"id": i, "bbox": [0, 0, 0, 1], "bbox_mode": BoxMode.XYWH_ABS, "category_id": 0} for i in range(25)
    ]
    d = {"file_name": "x.png", "height": H, "width": W, "image_id": 0, "annotations": anns}
    with pytest.raises(ValueError, match=r"(?s)25 bad boxes.*\.\.\. and 5 more") as e:
        handle_bad_boxes([d], "error", name="many")
    assert "annotation id=19]" in str(e.value) and "annotation id=20]" not in str(e.value)


def test_bad_boxes_drop_removes_them_and_logs(boxes_dataset, caplog):
    name, _, _ = boxes_dataset
    with caplog.at_level(logging.INFO, logger="rcnnzoo.data"):
        dicts = get_detection_dataset_dicts(name, bad_boxes="drop")
    assert [[a["id"] for a in d["annotations"]] for d in dicts] == [[1], [10]]
    assert "dropped 3 bad boxes" in caplog.text
    assert "box_outside_image: 1, degenerate_box: 1, wrong_layout: 1" in caplog.text
    # the registered data itself is untouched
    assert len(DatasetCatalog.get(name)[0]["annotations"]) == 4


def test_bad_boxes_clip_clips_the_outside_ones_and_drops_the_rest(boxes_dataset, caplog):
    name, _, _ = boxes_dataset
    with caplog.at_level(logging.INFO, logger="rcnnzoo.data"):
        dicts = get_detection_dataset_dicts(name, bad_boxes="clip")
    anns = {a["id"]: a for a in dicts[0]["annotations"]}
    assert sorted(anns) == [1, 3]  # zero-width 2 and wrong-layout 4 are dropped
    assert anns[1]["bbox"] == GOOD[1] and anns[1]["bbox_mode"] == BoxMode.XYWH_ABS
    assert anns[3]["bbox"] == [50, 10, 64, 30] and anns[3]["bbox_mode"] == BoxMode.XYXY_ABS
    assert "clipped 1 boxes to their image and dropped 2" in caplog.text
    assert "1 of 5 boxes look like the wrong layout" in caplog.text


def test_bad_boxes_are_handled_before_filter_empty(tmp_path, catalog_names, caplog):
    _write_png(tmp_path / "a.png")
    _write_png(tmp_path / "b.png")
    anns = [
        {"id": 1, "image_id": 1, "bbox": [0, 0, 0, 5], "category_id": 1},
        {"id": 2, "image_id": 2, "bbox": [0, 0, 5, 5], "category_id": 1},
    ]
    json_file = _write_coco(
        tmp_path, [{"file_name": "a.png", "id": 1}, {"file_name": "b.png", "id": 2}], anns
    )
    _register("checks_filter", catalog_names, json_file, tmp_path)
    with caplog.at_level(logging.INFO, logger="rcnnzoo.data"):
        kept = get_detection_dataset_dicts("checks_filter", filter_empty=True, bad_boxes="drop")
    assert [d["image_id"] for d in kept] == [2]
    assert "Removed 1 images" in caplog.text and "filter_empty=True" in caplog.text
    with caplog.at_level(logging.INFO, logger="rcnnzoo.data"):
        every = get_detection_dataset_dicts("checks_filter", filter_empty=False, bad_boxes="drop")
    assert len(every) == 2 and "filter_empty=False" in caplog.text


def test_unknown_bad_boxes_value_lists_the_valid_ones(boxes_dataset):
    with pytest.raises(ValueError, match="'error', 'drop', 'clip'"):
        get_detection_dataset_dicts(boxes_dataset[0], bad_boxes="ignore")


def test_unknown_dataset_name_suggests_the_closest(boxes_dataset):
    with pytest.raises(KeyError, match="Did you mean 'checks_boxes'"):
        get_detection_dataset_dicts(["checks_boxes", "checks_boxez"], bad_boxes="drop")


# ----------------------------------------------------------------------------- images and classes


def test_missing_and_corrupt_images_are_reported_with_their_paths(tmp_path, catalog_names):
    _write_png(tmp_path / "good.png")
    (tmp_path / "corrupt.png").write_bytes(b"this is not a png")
    _write_png(tmp_path / "turned.png", h=W, w=H)  # rotated: W x H instead of H x W
    images = [
        {"file_name": "good.png", "id": 1},
        {"file_name": "corrupt.png", "id": 2},
        {"file_name": "missing.png", "id": 3},
        {"file_name": "turned.png", "id": 4},
    ]
    anns = [{"id": i, "image_id": i, "bbox": [1, 1, 5, 5], "category_id": 1} for i in range(1, 5)]
    _register("checks_files", catalog_names, _write_coco(tmp_path, images, anns), tmp_path)

    report = _check("checks_files")  # "auto": 4 images are decoded
    by_kind = {p.kind: p for p in report.problems}
    assert set(by_kind) == {"missing_image", "unreadable_image", "image_size_mismatch"}
    assert by_kind["missing_image"].file == str(tmp_path / "missing.png")
    assert by_kind["unreadable_image"].file == str(tmp_path / "corrupt.png")
    assert "swapped" in by_kind["image_size_mismatch"].message
    assert str(tmp_path / "missing.png") in report.format()
    assert report.images_checked == "decoded" and not report.ok

    only_exists = _check("checks_files", read_images="exists")
    assert [p.kind for p in only_exists.problems] == ["missing_image"]
    with pytest.raises(ValueError, match="read_images"):
        _check("checks_files", read_images="some")


def test_num_classes_and_unknown_categories(boxes_dataset):
    name, _, _ = boxes_dataset
    report = _check(name, num_classes=5, bad_boxes="drop")
    (p,) = [p for p in report.problems if p.kind == "num_classes_mismatch"]
    assert p.severity == "error" and "model.roi_heads.num_classes=2" in p.message
    assert not [p for p in _check(name, num_classes=2, bad_boxes="drop").problems if p.severity == "error"]

    d = {
        "file_name": "x.png",
        "height": H,
        "width": W,
        "image_id": 0,
        "annotations": [
            {"id": 7, "bbox": [0, 0, 5, 5], "bbox_mode": BoxMode.XYWH_ABS, "category_id": 0},
            {
                "id": 8,
                "bbox": [0, 0, 5, 5],
                "bbox_mode": BoxMode.XYWH_ABS,
                "category_id": -1,
                "dataset_category_id": 9,
            },
            {"id": 9, "bbox": [0, 0, 5, 5], "bbox_mode": BoxMode.XYWH_ABS, "category_id": 3},
        ],
    }
    report = check_dataset_dicts([d], name="x", metadata={"thing_classes": ["a", "b"]}, read_images="none")
    unknown = [p for p in report.problems if p.kind == "unknown_category"]
    assert [(p.annotation_id, p.file) for p in unknown] == [(8, "x.png"), (9, "x.png")]
    assert "id 9 in the annotation file" in unknown[0].message
    assert report.instances_per_class == {"a": 1, "b": 0}


def test_images_without_objects_are_counted():
    dicts = [
        {"file_name": "a.png", "height": H, "width": W, "image_id": 0, "annotations": []},
        {
            "file_name": "b.png",
            "height": H,
            "width": W,
            "image_id": 1,
            "annotations": [
                {"bbox": [0, 0, 5, 5], "bbox_mode": BoxMode.XYWH_ABS, "category_id": 0, "iscrowd": 1}
            ],
        },
    ]
    report = check_dataset_dicts(dicts, name="x", metadata={"thing_classes": ["a"]}, read_images="none")
    assert report.images_without_objects == 2 and report.files_without_objects == ["a.png", "b.png"]
    assert report.num_instances == 0


# ----------------------------------------------------------------------------- anchor coverage


def _boxes_image(boxes: list[list[float]], h: int, w: int) -> dict:
    anns = [
        {"id": i, "bbox": b, "bbox_mode": BoxMode.XYXY_ABS, "category_id": 0} for i, b in enumerate(boxes)
    ]
    return {"file_name": "x.png", "height": h, "width": w, "image_id": 0, "annotations": anns}


def test_anchor_coverage_on_hand_made_boxes():
    # one level: 32x32 anchors every 16 px, centred on (16i, 16j)
    gen = DefaultAnchorGenerator(sizes=[[32]], aspect_ratios=[[1.0]], strides=[16])
    boxes = [
        [0, 0, 32, 32],  # an anchor exactly (centre 16, 16): IoU 1, medium (area 32**2)
        [48, 48, 80, 80],  # an anchor exactly (centre 64, 64): IoU 1, medium
        [100, 10, 104, 190],  # 4x180, small: IoU 128 / (720 + 1024 - 128) < 0.1
        [0, 0, 150, 150],  # large: IoU 1024 / 22500
    ]
    d = _boxes_image(boxes, 200, 200)
    report = check_dataset_dicts(
        [d], name="x", metadata={"thing_classes": ["a"]}, anchor_generator=gen, read_images="none"
    )
    cov = report.anchor_coverage
    assert cov["all"] == {"boxes": 4, "covered": 2, "share": 0.5}
    assert cov["small"] == {"boxes": 1, "covered": 0, "share": 0.0}
    assert cov["medium"] == {"boxes": 2, "covered": 2, "share": 1.0}
    assert cov["large"] == {"boxes": 1, "covered": 0, "share": 0.0}
    low = [p for p in report.problems if p.kind == "low_anchor_coverage"]
    assert len(low) == 2 and {p.severity for p in low} == {"warning"} and report.ok
    assert "small 0.0% (0/1)" in report.format()

    # at the training scale: a 100x100 image resized to 200 (max 1000) doubles the boxes, so a
    # 16x16 box (small, by its original area) meets a 32x32 anchor exactly
    d = _boxes_image([[0, 0, 16, 16]], 100, 100)
    report = check_dataset_dicts(
        [d], name="x", anchor_generator=gen, train_scale=(200, 1000), read_images="none"
    )
    assert report.anchor_coverage["small"] == {"boxes": 1, "covered": 1, "share": 1.0}
    report = check_dataset_dicts([d], name="x", anchor_generator=gen, read_images="none")
    assert report.anchor_coverage["small"]["covered"] == 0  # at the original size: IoU 0.25


def test_best_anchor_on_the_nearest_grid_point_equals_the_best_over_all_anchors():
    gen = DefaultAnchorGenerator(
        sizes=[[12], [24, 40]], aspect_ratios=[[0.5, 1.0, 2.0]], strides=[8, 16], offset=0.5
    )
    h, w = 96, 128
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, [w - 4, h - 4], size=(200, 2))
    wh = rng.uniform(2, 60, size=(200, 2))
    boxes = np.concatenate([xy, np.minimum(xy + wh, [w, h])], axis=1)
    feats = [torch.zeros(1, 1, math.ceil(h / s), math.ceil(w / s)) for s in (8, 16)]
    all_anchors = torch.cat(gen(feats))
    brute = (
        pairwise_iou(Boxes(torch.as_tensor(boxes, dtype=torch.float32)), Boxes(all_anchors))
        .max(dim=1)
        .values.numpy()
    )
    fast = _best_anchor_iou(boxes, np.tile([h, w], (len(boxes), 1)).astype(float), _anchor_levels(gen))
    np.testing.assert_allclose(fast, brute, atol=1e-5)


def test_annotation_table_handles_relative_modes():
    d = _boxes_image([], 50, 100)
    d["annotations"] = [{"bbox": [0.1, 0.2, 0.5, 0.4], "bbox_mode": BoxMode.XYWH_REL, "category_id": 0}]
    np.testing.assert_allclose(_Annotations.from_dicts([d]).xyxy(), [[10, 10, 60, 30]])


# ----------------------------------------------------------------------------- the datasets of a config


def _config(names, num_classes=2, bad_boxes=None):
    dataset = {"names": names}
    if bad_boxes:
        dataset["bad_boxes"] = bad_boxes
    return OmegaConf.create(
        {
            "model": {"roi_heads": {"num_classes": num_classes}},
            "dataloader": {
                "train": {
                    "dataset": dataset,
                    "mapper": {"augmentations": [{"short_edge_length": [40, 56], "max_size": 100}]},
                }
            },
        }
    )


def test_check_datasets_reads_the_config(boxes_dataset, tmp_path, catalog_names):
    name, _, _ = boxes_dataset
    other = tmp_path / "other"
    other.mkdir()
    _write_png(other / "c.png")
    anns = [{"id": 1, "image_id": 1, "bbox": [1, 1, 8, 8], "category_id": 1}]
    json_file = _write_coco(other, [{"file_name": "c.png", "id": 1}], anns, classes=("dog", "cat"))
    _register("checks_other", catalog_names, json_file, other)
    gen = DefaultAnchorGenerator(sizes=[[32]], aspect_ratios=[[1.0]], strides=[16])
    model = SimpleNamespace(proposal_generator=SimpleNamespace(anchor_generator=gen))

    reports = check_datasets(_config([name, "checks_other", "checks_nope"], bad_boxes="drop"), model=model)
    assert [r.name for r in reports] == [name, "checks_other", "checks_nope"]
    first, second, missing = reports
    assert first.ok  # bad boxes are warnings: the config drops them
    assert "train scale, at short edge 48, long edge <= 100 (middle of 40..56)" in first.coverage_note
    assert first.anchor_coverage["all"]["boxes"] == 3  # the good ones and the clipped outside one
    assert [p.kind for p in second.errors] == ["class_mismatch"]
    assert [p.kind for p in missing.errors] == ["load_failed"] and "Did you mean" in missing.errors[0].message

    (strict,) = check_datasets(_config(name, num_classes=3), model=SimpleNamespace())
    assert {p.kind for p in strict.errors} == {"num_classes_mismatch", *KIND.values()}
    assert strict.anchor_coverage is None and "no anchor generator" in strict.coverage_note
    assert check_datasets(_config(name), split="test", model=model) == []
    with pytest.raises(ValueError, match="split"):
        check_datasets(_config(name), split="val")


def test_loading_refuses_category_ids_outside_the_classes(catalog_names):
    catalog_names.append("checks_labels")
    anns = [
        {"id": 5, "bbox": [0, 0, 5, 5], "bbox_mode": BoxMode.XYWH_ABS, "category_id": c, "iscrowd": 0}
        for c in (0, 2, -1)
    ]
    d = {"file_name": "x.png", "height": H, "width": W, "image_id": 0, "annotations": anns}
    DatasetCatalog.register("checks_labels", lambda: [d])
    MetadataCatalog.get("checks_labels").set(thing_classes=["a", "b"])
    with pytest.raises(ValueError, match=r"(?s)2 annotations with an unknown category_id.*category_id=2.*-1"):
        get_detection_dataset_dicts("checks_labels")
