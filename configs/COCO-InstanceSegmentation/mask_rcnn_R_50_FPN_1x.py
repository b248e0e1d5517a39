"""Mask R-CNN R50-FPN on COCO 2017, the 1x schedule (90k iterations at batch 16), detectron2's recipe.

Box and mask AP (COCO ``bbox`` and ``segm``). Backbone weights: set ``train.init_checkpoint`` to
an ImageNet R-50 in the MSRA/caffe layout (BGR, pixel std 1) converted to an rcnnzoo checkpoint.
"""

from ..common.data.coco import dataloader
from ..common.models.mask_rcnn_fpn import model
from ..common.optim import SGD as optimizer
from ..common.schedules import lr_multiplier_1x as lr_multiplier
from ..common.train import train

dataloader.train.mapper.use_instance_mask = True
dataloader.train.mapper.image_format = model.input_format
dataloader.test.mapper.image_format = model.input_format
dataloader.evaluator.tasks = ("bbox", "segm")

train.max_iter = 90000
train.output_dir = "./output/coco_mask_rcnn_R_50_FPN_1x"
