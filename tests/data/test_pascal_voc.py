import os

import pytest

from rcnnzoo.data import DatasetCatalog, MetadataCatalog, load_voc_instances, register_pascal_voc
from rcnnzoo.data.datasets.pascal_voc import VOC_CLASSES
from rcnnzoo.structures import BoxMode

XML = """<annotation>
  <filename>{fid}.jpg</filename>
  <size><width>{w}</width><height>{h}</height><depth>3</depth></size>
  {objects}
</annotation>"""
OBJ = """<object><name>{name}</name>{difficult}
  <bndbox><xmin>{x0}</xmin><ymin>{y0}</ymin><xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox></object>"""


def _obj(name, box, difficult=None):
    tag = "" if difficult is None else f"<difficult>{difficult}</difficult>"
    return OBJ.format(name=name, difficult=tag, x0=box[0], y0=box[1], x1=box[2], y1=box[3])


def _make_voc(root, images):
    (root / "Annotations").mkdir(parents=True)
    (root / "ImageSets" / "Main").mkdir(parents=True)
    for fid, (w, h, objs) in images.items():
        (root / "Annotations" / f"{fid}.xml").write_text(XML.format(fid=fid, w=w, h=h, objects="".join(objs)))
    (root / "ImageSets" / "Main" / "trainval.txt").write_text("\n".join(images) + "\n")


def test_load_voc_instances(tmp_path):
    _make_voc(
        tmp_path,
        {
            "000005": (
                500,
                375,
                [_obj("chair", (263, 211, 324, 339), 0), _obj("person", (1, 1, 500, 375), 1)],
            ),
            "000007": (500, 333, [_obj("car", (141.5, 50, 500, 330))]),  # no <difficult> tag
        },
    )
    dicts = load_voc_instances(tmp_path, "trainval", VOC_CLASSES)
    assert [d["image_id"] for d in dicts] == ["000005", "000007"]
    d0 = dicts[0]
    assert d0["file_name"] == os.path.join(str(tmp_path), "JPEGImages", "000005.jpg")
    assert (d0["height"], d0["width"]) == (375, 500)
    chair, person = d0["annotations"]
    # 1-based inclusive -> continuous coordinates: only the min corner moves.
    assert chair["bbox"] == [262.0, 210.0, 324.0, 339.0]
    assert person["bbox"] == [0.0, 0.0, 500.0, 375.0]  # the full image
    assert chair["bbox_mode"] == BoxMode.XYXY_ABS
    assert chair["category_id"] == VOC_CLASSES.index("chair")
    assert (chair["difficult"], person["difficult"]) == (0, 1)
    (car,) = dicts[1]["annotations"]
    assert car["bbox"] == [140.5, 49.0, 500.0, 330.0] and car["difficult"] == 0


def test_custom_classes_and_unknown_class(tmp_path):
    _make_voc(tmp_path, {"a": (10, 10, [_obj("dog", (1, 1, 5, 5))])})
    dicts = load_voc_instances(tmp_path, "trainval", ["cat", "dog"])
    assert dicts[0]["annotations"][0]["category_id"] == 1
    with pytest.raises(ValueError, match="'dog'"):
        load_voc_instances(tmp_path, "trainval", ["cat"])


def test_missing_files_name_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"ImageSets/Main/test\.txt"):
        load_voc_instances(tmp_path, "test", VOC_CLASSES)
    _make_voc(tmp_path, {"x": (10, 10, [])})
    (tmp_path / "ImageSets" / "Main" / "trainval.txt").write_text("x\nmissing_one\n")
    with pytest.raises(FileNotFoundError, match=r"Annotations/missing_one\.xml"):
        load_voc_instances(tmp_path, "trainval", VOC_CLASSES)


def test_register_pascal_voc(tmp_path, catalog_names):
    catalog_names.append("tmp_voc")
    register_pascal_voc("tmp_voc", str(tmp_path), "trainval", 2007, class_names=["dog"])
    meta = MetadataCatalog.get("tmp_voc")
    assert (meta.dirname, meta.split, meta.year, meta.evaluator_type) == (
        str(tmp_path),
        "trainval",
        2007,
        "pascal_voc",
    )
    assert meta.thing_classes == ["dog"]
    _make_voc(tmp_path, {"a": (10, 10, [_obj("dog", (1, 1, 5, 5))])})  # created after registration
    assert len(DatasetCatalog.get("tmp_voc")) == 1
