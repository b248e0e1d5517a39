"""Dataset loaders (COCO json, PASCAL VOC xml, synthetic shapes) and the built-in names."""

from .builtin import register_all_builtin
from .coco import load_coco_json, register_coco_instances
from .pascal_voc import VOC_CLASSES, load_voc_instances, register_pascal_voc
from .paths import DatasetPath, get_datasets_root
from .shapes import SHAPES_CLASSES, ShapesParams, generate_shapes, prepare_shapes, register_shapes

__all__ = [
    "DatasetPath",
    "SHAPES_CLASSES",
    "ShapesParams",
    "VOC_CLASSES",
    "generate_shapes",
    "get_datasets_root",
    "load_coco_json",
    "load_voc_instances",
    "prepare_shapes",
    "register_all_builtin",
    "register_coco_instances",
    "register_pascal_voc",
    "register_shapes",
]
