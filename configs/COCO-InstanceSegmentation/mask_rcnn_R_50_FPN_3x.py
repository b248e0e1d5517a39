"""Mask R-CNN R50-FPN on COCO 2017, the 3x schedule (270k iterations at batch 16)."""

from ..common.schedules import lr_multiplier_3x as lr_multiplier
from .mask_rcnn_R_50_FPN_1x import dataloader, model, optimizer, train

train.max_iter = 270000
train.output_dir = "./output/coco_mask_rcnn_R_50_FPN_3x"
