"""PASCAL VOC detection data (under ``$RCNNZOO_DATASETS/VOC2007`` and ``VOC2012``).

Training on VOC 2007 + 2012 trainval, testing on VOC 2007 test with the devkit's 11-point
metric (``PascalVOCDetectionEvaluator`` picks it from the dataset's year). Scales follow
detectron2's VOC configs: shortest edge 480..800 in training, 800 at test, longest at most 1333.
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
from rcnnzoo.evaluation import PascalVOCDetectionEvaluator

dataloader = OmegaConf.create()

dataloader.train = L(build_detection_train_loader)(
    dataset=L(get_detection_dataset_dicts)(names=["voc_2007_trainval", "voc_2012_trainval"], filter_empty=True),
    mapper=L(DatasetMapper)(
        is_train=True,
        augmentations=[
            L(ResizeShortestEdge)(
                short_edge_length=tuple(range(480, 801, 32)), max_size=1333, sample_style="choice"
            ),
            L(RandomFlip)(horizontal=True),
        ],
        image_format="BGR",
    ),
    total_batch_size=16,
    num_workers=4,
)

dataloader.test = L(build_detection_test_loader)(
    dataset=L(get_detection_dataset_dicts)(names="voc_2007_test", filter_empty=False),
    mapper=L(DatasetMapper)(
        is_train=False,
        augmentations=[L(ResizeShortestEdge)(short_edge_length=800, max_size=1333)],
        image_format="BGR",
    ),
    batch_size=1,
    num_workers=4,
)

dataloader.evaluator = L(PascalVOCDetectionEvaluator)(dataset_name="voc_2007_test")
