"""Faster R-CNN VGG16 on PASCAL VOC 2007, the paper's / simple-faster-rcnn-pytorch's settings.

Trains on VOC 2007 trainval, tests on VOC 2007 test (11-point AP). One image per batch,
shortest edge 600 and longest at most 1000, horizontal flip, SGD LR 0.001 with weight decay
5e-4, 14 epochs (70k iterations) with the LR divided by 10 after epoch 9, as in the seed.
ImageNet VGG16 weights (torchvision's, RGB) go in ``train.init_checkpoint``.

Deviations: those of ``common/models/faster_rcnn_vgg16.py`` (L1 box loss, border anchors kept),
and a 500-iteration linear warmup the seed does not have.
"""

from rcnnzoo.config import LazyCall as L
from rcnnzoo.data import RandomFlip, ResizeShortestEdge

from ..common.data.voc import dataloader
from ..common.models.faster_rcnn_vgg16 import model
from ..common.optim import SGD as optimizer
from ..common.schedules import step_schedule
from ..common.train import train

dataloader.train.dataset.names = "voc_2007_trainval"
dataloader.train.mapper.augmentations = [
    L(ResizeShortestEdge)(short_edge_length=600, max_size=1000),
    L(RandomFlip)(horizontal=True),
]
dataloader.test.mapper.augmentations = [L(ResizeShortestEdge)(short_edge_length=600, max_size=1000)]
dataloader.train.mapper.image_format = model.input_format
dataloader.test.mapper.image_format = model.input_format
dataloader.train.total_batch_size = 1

model.roi_heads.num_classes = 20

optimizer.lr = 0.001
optimizer.weight_decay = 5e-4
train.max_iter = 70000
lr_multiplier = step_schedule(train.max_iter, steps=(9 / 14,), warmup_iter=500)
train.checkpointer.period = 5000
train.eval_period = 10000
train.output_dir = "./output/voc_faster_rcnn_vgg16"
