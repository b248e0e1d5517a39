"""COCO 2017 detection data (under ``$RCNNZOO_DATASETS/coco``), detectron2's multi-scale training.

Training: shortest edge one of 640..800 (step 32), longest at most 1333, horizontal flip.
Test: shortest edge 800, longest at most 1333. Batch 16 across all processes.
Top-level configs set ``mapper.image_format`` to their model's ``input_format``.
"""

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
    # COCO 2017 has a few boxes with zero width or height: drop them (logged) rather than fail.
    # Images without objects are dropped, as in detectron2's COCO recipes.
    dataset=L(get_detection_dataset_dicts)(names="coco_2017_train", bad_boxes="drop", filter_empty=True),
    mapper=L(DatasetMapper)(
        is_train=True,
        augmentations=[
            L(ResizeShortestEdge)(
                short_edge_length=(640, 672, 704, 736, 768, 800), max_size=1333, sample_style="choice"
            ),
            L(RandomFlip)(horizontal=True),
        ],
        image_format="BGR",
    ),
    total_batch_size=16,
    num_workers=4,
)

dataloader.test = L(build_detection_test_loader)(
    # The evaluator scores against the json file itself; dropped boxes change only the loaded dicts.
    dataset=L(get_detection_dataset_dicts)(names="coco_2017_val", filter_empty=False, bad_boxes="drop"),
    mapper=L(DatasetMapper)(
        is_train=False,
        augmentations=[L(ResizeShortestEdge)(short_edge_length=800, max_size=1333)],
        image_format="BGR",
    ),
    batch_size=1,
    num_workers=4,
)

dataloader.evaluator = L(COCOEvaluator)(dataset_name="coco_2017_val")
