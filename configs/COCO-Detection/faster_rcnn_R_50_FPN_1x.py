"""Faster R-CNN R50-FPN on COCO 2017, the 1x schedule (90k iterations at batch 16), detectron2's recipe.

Backbone weights: set ``train.init_checkpoint`` to an ImageNet R-50 in the MSRA/caffe layout
(BGR, pixel std 1) converted to an rcnnzoo checkpoint; trained from scratch otherwise, which a
1x schedule does not suit.
"""

from ..common.data.coco import dataloader
from ..common.models.faster_rcnn_fpn import model
from ..common.optim import SGD as optimizer
from ..common.schedules import lr_multiplier_1x as lr_multiplier
from ..common.train import train

dataloader.train.mapper.image_format = model.input_format
dataloader.test.mapper.image_format = model.input_format

train.max_iter = 90000
train.output_dir = "./output/coco_faster_rcnn_R_50_FPN_1x"
