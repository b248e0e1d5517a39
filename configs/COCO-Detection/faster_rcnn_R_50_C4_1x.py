"""Faster R-CNN R50-C4 on COCO 2017, 1x: RPN and RoI pooling on res4 (stride 16), res5 as the box head.

As detectron2's C4 baseline: anchors 32..512 x 0.5/1/2 on one map, RoIAlign 14x14 pooled then
res5 (stride 2) and global average pooling, 12000/6000 pre-NMS and 2000/1000 post-NMS proposals.
"""

from ..common.data.coco import dataloader
from ..common.models.faster_rcnn_c4 import model
from ..common.optim import SGD as optimizer
from ..common.schedules import lr_multiplier_1x as lr_multiplier
from ..common.train import train

dataloader.train.mapper.image_format = model.input_format
dataloader.test.mapper.image_format = model.input_format

train.max_iter = 90000
train.output_dir = "./output/coco_faster_rcnn_R_50_C4_1x"
