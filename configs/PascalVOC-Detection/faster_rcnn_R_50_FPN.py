"""Faster R-CNN R50-FPN on PASCAL VOC 2007+2012 trainval, tested on VOC 2007 test; detectron2's VOC recipe.

Batch 16, LR 0.02, 18k iterations with the LR divided by 10 at 12k and 16k.
"""

from ..common.data.voc import dataloader
from ..common.models.faster_rcnn_fpn import model
from ..common.optim import SGD as optimizer
from ..common.schedules import step_schedule
from ..common.train import train

dataloader.train.mapper.image_format = model.input_format
dataloader.test.mapper.image_format = model.input_format

model.roi_heads.num_classes = 20

train.max_iter = 18000
lr_multiplier = step_schedule(train.max_iter, steps=(12000 / 18000, 16000 / 18000), warmup_iter=100)
train.eval_period = 6000
train.output_dir = "./output/voc_faster_rcnn_R_50_FPN"
