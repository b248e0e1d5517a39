"""The data side: dataset catalogs, loaders for COCO/VOC/synthetic shapes, augmentations, mapper, loaders.

Importing this package registers the built-in dataset names (``coco_2017_train``,
``voc_2007_test``, ``shapes_train``, ...) without touching the disk.
"""

from . import transforms
from .build import (
    build_detection_test_loader,
    build_detection_train_loader,
    get_detection_dataset_dicts,
    trivial_batch_collator,
)
from .catalog import DatasetCatalog, Metadata, MetadataCatalog
from .checks import (
    BAD_BOX_MODES,
    DatasetReport,
    Problem,
    check_category_ids,
    check_dataset_dicts,
    check_datasets,
    handle_bad_boxes,
)
from .classes import num_classes_of, thing_classes_of
from .datasets import (
    SHAPES_CLASSES,
    VOC_CLASSES,
    DatasetPath,
    ShapesParams,
    generate_shapes,
    get_datasets_root,
    load_coco_json,
    load_voc_instances,
    register_coco_instances,
    register_pascal_voc,
    register_shapes,
)
from .datasets.builtin import register_all_builtin
from .mapper import DatasetMapper, read_image
from .proposals import ProposalFile, attach_proposals, load_proposals, save_proposals
from .samplers import InferenceSampler, TrainingSampler
from .transforms import RandomFlip, ResizeShortestEdge, apply_augmentations

register_all_builtin()

__all__ = [
    "BAD_BOX_MODES",
    "DatasetCatalog",
    "DatasetMapper",
    "DatasetPath",
    "DatasetReport",
    "InferenceSampler",
    "Metadata",
    "MetadataCatalog",
    "Problem",
    "ProposalFile",
    "RandomFlip",
    "ResizeShortestEdge",
    "SHAPES_CLASSES",
    "ShapesParams",
    "TrainingSampler",
    "VOC_CLASSES",
    "apply_augmentations",
    "attach_proposals",
    "build_detection_test_loader",
    "build_detection_train_loader",
    "check_category_ids",
    "check_dataset_dicts",
    "check_datasets",
    "generate_shapes",
    "get_datasets_root",
    "get_detection_dataset_dicts",
    "handle_bad_boxes",
    "num_classes_of",
    "thing_classes_of",
    "load_coco_json",
    "load_proposals",
    "load_voc_instances",
    "read_image",
    "register_coco_instances",
    "register_pascal_voc",
    "register_shapes",
    "save_proposals",
    "transforms",
    "trivial_batch_collator",
]
