import json
import os

import pytest

from rcnnzoo.data import DatasetCatalog, MetadataCatalog, get_datasets_root

BUILTIN = ["coco_2017_train", "coco_2017_val", "voc_2007_trainval", "voc_2007_test", "voc_2012_trainval"]


def test_builtin_names_are_registered():
    for name in BUILTIN + ["shapes_train", "shapes_val"]:
        assert name in DatasetCatalog.list()
    assert MetadataCatalog.get("coco_2017_val").evaluator_type == "coco"
    voc = MetadataCatalog.get("voc_2007_test")
    assert (voc.evaluator_type, voc.split, voc.year, len(voc.thing_classes)) == (
        "pascal_voc",
        "test",
        2007,
        20,
    )
    assert MetadataCatalog.get("shapes_val").thing_classes == ["circle", "rectangle", "triangle"]


@pytest.mark.parametrize(
    "name, missing",
    [
        ("coco_2017_val", "coco/annotations/instances_val2017.json"),
        ("coco_2017_train", "coco/annotations/instances_train2017.json"),
        ("voc_2007_test", "VOC2007"),
        ("voc_2012_trainval", "VOC2012"),
    ],
)
def test_missing_data_error_names_path_layout_and_env(datasets_root, name, missing):
    with pytest.raises(FileNotFoundError) as e:
        DatasetCatalog.get(name)
    msg = str(e.value)
    assert os.path.join(str(datasets_root), missing) in msg
    assert "RCNNZOO_DATASETS" in msg
    assert "ImageSets/Main" in msg or "coco/train2017" in msg  # the expected layout is shown


def test_root_is_read_at_load_time(tmp_path, monkeypatch):
    """Set the root after import: both the loader and the metadata paths follow it."""
    root = tmp_path / "later_root"
    monkeypatch.setenv("RCNNZOO_DATASETS", str(root))
    assert get_datasets_root() == str(root)
    (root / "coco" / "annotations").mkdir(parents=True)
    (root / "coco" / "val2017").mkdir()
    coco = {
        "images": [{"id": 1, "file_name": "1.jpg", "height": 8, "width": 8}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 4, 4]}],
        "categories": [{"id": 1, "name": "person"}],
    }
    (root / "coco" / "annotations" / "instances_val2017.json").write_text(json.dumps(coco))

    dicts = DatasetCatalog.get("coco_2017_val")
    assert dicts[0]["file_name"] == os.path.join(str(root), "coco", "val2017", "1.jpg")
    meta = MetadataCatalog.get("coco_2017_val")
    assert os.fspath(meta.json_file) == os.path.join(
        str(root), "coco", "annotations", "instances_val2017.json"
    )
    with open(meta.json_file) as f:  # usable as a path by evaluators
        assert json.load(f)["categories"][0]["name"] == "person"

    monkeypatch.setenv("RCNNZOO_DATASETS", str(tmp_path / "elsewhere"))
    with pytest.raises(FileNotFoundError, match="elsewhere"):
        DatasetCatalog.get("coco_2017_val")


def test_default_root(monkeypatch):
    monkeypatch.delenv("RCNNZOO_DATASETS", raising=False)
    assert get_datasets_root() == "./datasets"
