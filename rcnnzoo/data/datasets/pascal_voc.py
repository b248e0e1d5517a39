"""PASCAL VOC detection annotations (``Annotations/*.xml``) -> dataset dicts.

VOC stores boxes as 1-based, inclusive pixel indices. Like detectron2 we subtract 1 from
``xmin``/``ymin`` only, so a box covering pixels 1..W becomes ``[0, W]`` in the continuous
XYXY coordinates used everywhere else (GUIDE §4); evaluators that reproduce the official
VOC AP add the 1 back.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from collections.abc import Sequence

from rcnnzoo.structures import BoxMode

from ..catalog import DatasetCatalog, MetadataCatalog

__all__ = ["VOC_CLASSES", "load_voc_instances", "register_pascal_voc"]

PathLike = str | os.PathLike

VOC_CLASSES: tuple[str, ...] = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)  # fmt: skip


def _read_split(dirname: str, split: str) -> list[str]:
    path = os.path.join(dirname, "ImageSets", "Main", f"{split}.txt")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"VOC image list not found: {os.path.abspath(path)}")
    with open(path) as f:
        return [line.strip() for line in f if line.strip()]


def _text(node: ET.Element, tag: str, xml_path: str) -> str:
    child = node.find(tag)
    if child is None or child.text is None:
        raise ValueError(f"{xml_path}: <{node.tag}> has no <{tag}>")
    return child.text.strip()


def _parse_object(obj: ET.Element, class_names: Sequence[str], xml_path: str) -> dict:
    cls = _text(obj, "name", xml_path)
    if cls not in class_names:
        raise ValueError(f"{xml_path}: object class {cls!r} is not in class_names {list(class_names)}")
    bndbox = obj.find("bndbox")
    if bndbox is None:
        raise ValueError(f"{xml_path}: object {cls!r} has no <bndbox>")
    x0, y0, x1, y1 = (float(_text(bndbox, t, xml_path)) for t in ("xmin", "ymin", "xmax", "ymax"))
    difficult = obj.find("difficult")  # absent in some VOC2012 files: means not difficult
    return {
        "category_id": class_names.index(cls),
        "bbox": [x0 - 1.0, y0 - 1.0, x1, y1],
        "bbox_mode": BoxMode.XYXY_ABS,
        "difficult": int(difficult is not None and (difficult.text or "0").strip() == "1"),
    }


def _parse_xml(dirname: str, fileid: str, class_names: Sequence[str]) -> dict:
    xml_path = os.path.join(dirname, "Annotations", f"{fileid}.xml")
    if not os.path.isfile(xml_path):
        raise FileNotFoundError(f"VOC annotation not found: {os.path.abspath(xml_path)}")
    root = ET.parse(xml_path).getroot()
    size = root.find("size")
    if size is None:
        raise ValueError(f"{xml_path}: no <size>")
    return {
        "file_name": os.path.join(dirname, "JPEGImages", f"{fileid}.jpg"),
        "image_id": fileid,
        "height": int(_text(size, "height", xml_path)),
        "width": int(_text(size, "width", xml_path)),
        "annotations": [_parse_object(obj, class_names, xml_path) for obj in root.findall("object")],
    }


def load_voc_instances(dirname: PathLike, split: str, class_names: Sequence[str] = VOC_CLASSES) -> list[dict]:
    """Load the images of ``ImageSets/Main/{split}.txt`` with their ``Annotations/*.xml``.

    Args:
        dirname: a VOC year folder, e.g. ``datasets/VOC2007`` (with Annotations/, ImageSets/, JPEGImages/).
        split: "train", "val", "trainval" or "test".
        class_names: the K classes; ``category_id`` is the index in this list.

    Returns:
        one dict per listed image: ``file_name`` (JPEGImages/<id>.jpg), ``image_id`` (the file id, str),
        ``height``, ``width``, ``annotations``: ``bbox`` ([x0 - 1, y0 - 1, x1, y1] of the xml),
        ``bbox_mode`` (``BoxMode.XYXY_ABS``), ``category_id``, ``difficult`` (0/1).

    Raises:
        FileNotFoundError: naming the missing split list or xml file.
    """
    dirname = os.fspath(dirname)
    class_names = list(class_names)
    return [_parse_xml(dirname, fileid, class_names) for fileid in _read_split(dirname, split)]


def register_pascal_voc(
    name: str, dirname: PathLike, split: str, year: int, class_names: Sequence[str] = VOC_CLASSES
) -> None:
    """Register a VOC split under ``name`` (read on first ``DatasetCatalog.get``).

    Metadata: ``thing_classes``, ``dirname``, ``split``, ``year``, ``evaluator_type="pascal_voc"``.
    """
    class_names = list(class_names)
    DatasetCatalog.register(name, lambda: load_voc_instances(dirname, split, class_names))
    MetadataCatalog.get(name).set(
        thing_classes=class_names, dirname=dirname, split=split, year=year, evaluator_type="pascal_voc"
    )
