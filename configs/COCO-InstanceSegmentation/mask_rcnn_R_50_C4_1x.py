"""Mask R-CNN R50-C4 on COCO 2017, 1x: res5 on each RoI shared by the box and the (14x14) mask branch."""

from ..common.data.coco import dataloader
from ..common.models.mask_rcnn_c4 import model
from ..common.optim import SGD as optimizer
from ..common.schedules import lr_multiplier_1x as lr_multiplier
from ..common.train import train

dataloader.train.mapper.use_instance_mask = True
dataloader.train.mapper.image_format = model.input_format
dataloader.test.mapper.image_format = model.input_format
dataloader.evaluator.tasks = ("bbox", "segm")

train.max_iter = 90000
train.output_dir = "./output/coco_mask_rcnn_R_50_C4_1x"
