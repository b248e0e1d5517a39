import json
import os

import pytest

from rcnnzoo.data import (
    DatasetCatalog,
    MetadataCatalog,
    check_category_ids,
    load_coco_json,
    register_coco_instances,
)
from rcnnzoo.structures import BoxMode

RLE = {"size": [40, 60], "counts": "Xa05c01O00000O1N2Nd0"}


def _write_coco(path):
    coco = {
        "images": [
            {"id": 11, "file_name": "a.jpg", "height": 40, "width": 60},
            {"id": 12, "file_name": "sub/b.jpg", "height": 50, "width": 30},
        ],
        # Non-contiguous ids, listed out of order: labels follow increasing id.
        "categories": [{"id": 7, "name": "dog"}, {"id": 3, "name": "cat"}, {"id": 12, "name": "zebra"}],
        "annotations": [
            {"id": 1, "image_id": 11, "category_id": 12, "bbox": [1, 2, 10, 20], "iscrowd": 0,
             "segmentation": [[1, 2, 11, 2, 11, 22, 1, 22], [0, 0, 1, 1]]},
            {"id": 2, "image_id": 11, "category_id": 3, "bbox": [5, 5, 4, 4], "iscrowd": 1, "segmentation": RLE},
            {"id": 3, "image_id": 11, "category_id": 7, "bbox": [0, 0, 3, 3]},
        ],
    }  # fmt: skip
    path.write_text(json.dumps(coco))
    return coco


def test_load_coco_json_maps_ids_and_keeps_fields(tmp_path, catalog_names):
    catalog_names.append("tmp_coco")
    json_file = tmp_path / "instances.json"
    _write_coco(json_file)
    dicts = load_coco_json(json_file, "/imgs", dataset_name="tmp_coco")

    assert [d["image_id"] for d in dicts] == [11, 12]
    assert dicts[0]["file_name"] == os.path.join("/imgs", "a.jpg")
    assert dicts[1]["file_name"] == os.path.join("/imgs", "sub/b.jpg")
    assert (dicts[0]["height"], dicts[0]["width"]) == (40, 60)
    assert dicts[1]["annotations"] == []

    a1, a2, a3 = dicts[0]["annotations"]
    assert [a["category_id"] for a in (a1, a2, a3)] == [2, 0, 1]  # ids 12, 3, 7 -> sorted 3, 7, 12
    assert a1["bbox"] == [1, 2, 10, 20] and a1["bbox_mode"] == BoxMode.XYWH_ABS
    assert a1["segmentation"] == [[1, 2, 11, 2, 11, 22, 1, 22]]  # the 2-point polygon is dropped
    assert a2["segmentation"] == RLE and a2["iscrowd"] == 1
    assert "segmentation" not in a3 and a3["iscrowd"] == 0
    assert [a["id"] for a in (a1, a2, a3)] == [1, 2, 3]

    meta = MetadataCatalog.get("tmp_coco")
    assert meta.thing_classes == ["cat", "dog", "zebra"]
    assert meta.thing_dataset_id_to_contiguous_id == {3: 0, 7: 1, 12: 2}


def test_missing_json_names_the_path(tmp_path):
    missing = tmp_path / "nope" / "instances.json"
    with pytest.raises(FileNotFoundError, match="nope/instances.json"):
        load_coco_json(missing, tmp_path)


def test_unknown_category_is_kept_for_the_checks_and_refused_before_training(tmp_path):
    json_file = tmp_path / "bad.json"
    coco = _write_coco(json_file)
    coco["annotations"][0]["category_id"] = 99
    json_file.write_text(json.dumps(coco))
    dicts = load_coco_json(json_file, tmp_path)
    ann = next(a for d in dicts for a in d["annotations"] if a["id"] == coco["annotations"][0]["id"])
    assert ann["category_id"] == -1 and ann["dataset_category_id"] == 99
    with pytest.raises(ValueError, match=r"id 99 in the annotation file"):
        check_category_ids(dicts, ["cat", "dog", "zebra"], name="bad", json_file=str(json_file))


def test_register_coco_instances_is_lazy(tmp_path, catalog_names):
    catalog_names.append("tmp_coco_reg")
    json_file = tmp_path / "later.json"
    register_coco_instances("tmp_coco_reg", {"year": 2024}, str(json_file), str(tmp_path))
    meta = MetadataCatalog.get("tmp_coco_reg")
    assert (meta.json_file, meta.image_root, meta.evaluator_type, meta.year) == (
        str(json_file),
        str(tmp_path),
        "coco",
        2024,
    )
    with pytest.raises(FileNotFoundError, match="later.json"):
        DatasetCatalog.get("tmp_coco_reg")
    _write_coco(json_file)  # created after registration: picked up on load
    assert len(DatasetCatalog.get("tmp_coco_reg")) == 2
    assert meta.thing_classes == ["cat", "dog", "zebra"]
