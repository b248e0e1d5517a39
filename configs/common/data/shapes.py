"""Data for the built-in synthetic shapes dataset (generated on first use, no download)."""

from omegaconf import OmegaConf

from rcnnzoo.config import LazyCall as L
from rcnnzoo.data import (
    DatasetMapper,
    RandomFlip,
    ResizeShortestEdge,
    build_detection_test_loader,
    build_detection_train_loader,
    get_detection_dataset_dicts,
)
from rcnnzoo.evaluation import COCOEvaluator

dataloader = OmegaConf.create()

dataloader.train = L(build_detection_train_loader)(
    dataset=L(get_detection_dataset_dicts)(names="shapes_train"),
    mapper=L(DatasetMapper)(
        is_train=True,
        augmentations=[
            L(ResizeShortestEdge)(short_edge_length=(224, 256, 288), max_size=480, sample_style="choice"),
            L(RandomFlip)(horizontal=True),
        ],
        image_format="BGR",
    ),
    total_batch_size=8,
    num_workers=1,
)

dataloader.test = L(build_detection_test_loader)(
    dataset=L(get_detection_dataset_dicts)(names="shapes_val", filter_empty=False),
    mapper=L(DatasetMapper)(
        is_train=False,
        augmentations=[L(ResizeShortestEdge)(short_edge_length=256, max_size=480)],
        image_format="BGR",
    ),
    batch_size=4,
    num_workers=1,
)

dataloader.evaluator = L(COCOEvaluator)(dataset_name="shapes_val")
