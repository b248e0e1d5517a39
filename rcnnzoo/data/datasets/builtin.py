"""Built-in dataset names, registered on ``import rcnnzoo.data``.

Registration only records functions; it never touches the disk. Paths are relative to the
datasets root, ``$RCNNZOO_DATASETS`` (default ``./datasets``), read when a dataset is loaded:

    $RCNNZOO_DATASETS/
      coco/annotations/instances_{train,val}2017.json
      coco/{train,val}2017/*.jpg
      VOC2007/{Annotations,ImageSets,JPEGImages}/     (trainval and test)
      VOC2012/{Annotations,ImageSets,JPEGImages}/     (trainval)
      shapes/                                         (generated on first use)
"""

from __future__ import annotations

import os
from collections.abc import Callable

from ..catalog import DatasetCatalog, MetadataCatalog
from .coco import load_coco_json
from .pascal_voc import VOC_CLASSES, load_voc_instances
from .paths import DATASETS_ENV, DatasetPath, describe_datasets_root
from .shapes import register_shapes

__all__ = ["register_all_builtin", "BUILTIN_COCO", "BUILTIN_VOC", "BUILTIN_SHAPES"]

# name -> (image folder, annotation json), relative to the datasets root
BUILTIN_COCO: dict[str, tuple[str, str]] = {
    "coco_2017_train": ("coco/train2017", "coco/annotations/instances_train2017.json"),
    "coco_2017_val": ("coco/val2017", "coco/annotations/instances_val2017.json"),
}
# name -> (folder relative to the root, split, year)
BUILTIN_VOC: dict[str, tuple[str, str, int]] = {
    "voc_2007_trainval": ("VOC2007", "trainval", 2007),
    "voc_2007_test": ("VOC2007", "test", 2007),
    "voc_2012_trainval": ("VOC2012", "trainval", 2012),
}
# name -> (split, number of images, seed): different seeds so val images are unseen in training
BUILTIN_SHAPES: dict[str, tuple[str, int, int]] = {
    "shapes_train": ("train", 1000, 0),
    "shapes_val": ("val", 200, 1),
}

_COCO_LAYOUT = """\
  coco/annotations/instances_{train,val}2017.json
  coco/train2017/*.jpg
  coco/val2017/*.jpg"""
_VOC_LAYOUT = """\
  VOC2007/Annotations/*.xml
  VOC2007/ImageSets/Main/{trainval,test}.txt
  VOC2007/JPEGImages/*.jpg
  VOC2012/... (same layout, trainval)"""


def _require(name: str, paths: list[DatasetPath], layout: str) -> None:
    """Raise FileNotFoundError naming the first missing path, the expected layout and the root variable."""
    for p in paths:
        if not os.path.exists(p):
            raise FileNotFoundError(
                f"Dataset {name!r} is not available: {os.path.abspath(p)} does not exist.\n"
                f"The datasets root is {describe_datasets_root()}; it should contain:\n{layout}\n"
                f"Download the data there, or set ${DATASETS_ENV} to the folder that holds it."
            )


def _coco_loader(name: str, image_root: DatasetPath, json_file: DatasetPath) -> Callable[[], list[dict]]:
    def load() -> list[dict]:
        _require(name, [json_file, image_root], _COCO_LAYOUT)
        return load_coco_json(json_file, image_root, name)

    return load


def _voc_loader(name: str, dirname: DatasetPath, split: str) -> Callable[[], list[dict]]:
    def load() -> list[dict]:
        split_file = DatasetPath(os.path.join(dirname.relative, "ImageSets", "Main", f"{split}.txt"))
        annotations = DatasetPath(os.path.join(dirname.relative, "Annotations"))
        _require(name, [dirname, split_file, annotations], _VOC_LAYOUT)
        return load_voc_instances(dirname, split, VOC_CLASSES)

    return load


def register_all_builtin() -> None:
    """Register the built-in names (skipping any already registered, so a re-import is harmless)."""
    for name, (image_dir, json_path) in BUILTIN_COCO.items():
        if name in DatasetCatalog:
            continue
        image_root, json_file = DatasetPath(image_dir), DatasetPath(json_path)
        DatasetCatalog.register(name, _coco_loader(name, image_root, json_file))
        MetadataCatalog.get(name).set(json_file=json_file, image_root=image_root, evaluator_type="coco")
    for name, (folder, split, year) in BUILTIN_VOC.items():
        if name in DatasetCatalog:
            continue
        dirname = DatasetPath(folder)
        DatasetCatalog.register(name, _voc_loader(name, dirname, split))
        MetadataCatalog.get(name).set(
            thing_classes=list(VOC_CLASSES), dirname=dirname, split=split, year=year, evaluator_type="pascal_voc"
        )
    for name, (split, num_images, seed) in BUILTIN_SHAPES.items():
        if name not in DatasetCatalog:
            register_shapes(name, split, num_images, seed)
