"""Faster R-CNN VGG16 on COCO 2017 with the paper's / seed's image scale.

Shortest edge 600, longest at most 1000 (training and test); anchors 128/256/512 x 0.5/1/2
on conv5_3 (stride 16); RoIPool 7x7; fc6/fc7 with dropout. The paper trains with one image per
GPU at LR 0.001; here batch 8 at LR 0.01 (linear scaling), 2x90k iterations' worth of images
at 1x, weight decay 5e-4 as in the seed. ImageNet VGG16 weights (torchvision's, RGB) go in
``train.init_checkpoint``.
"""

from rcnnzoo.config import LazyCall as L
from rcnnzoo.data import RandomFlip, ResizeShortestEdge

from ..common.data.coco import dataloader
from ..common.models.faster_rcnn_vgg16 import model
from ..common.optim import SGD as optimizer
from ..common.schedules import step_schedule
from ..common.train import train

dataloader.train.mapper.augmentations = [
    L(ResizeShortestEdge)(short_edge_length=600, max_size=1000),
    L(RandomFlip)(horizontal=True),
]
dataloader.test.mapper.augmentations = [L(ResizeShortestEdge)(short_edge_length=600, max_size=1000)]
dataloader.train.mapper.image_format = model.input_format
dataloader.test.mapper.image_format = model.input_format
dataloader.train.total_batch_size = 8

optimizer.lr = 0.01
optimizer.weight_decay = 5e-4
train.max_iter = 180000
lr_multiplier = step_schedule(train.max_iter, steps=(2 / 3, 8 / 9), warmup_iter=1000)
train.output_dir = "./output/coco_faster_rcnn_vgg16"
