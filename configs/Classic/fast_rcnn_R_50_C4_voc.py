"""Fast R-CNN ResNet-50-C4 on PASCAL VOC 2007 with selective search proposals.

The Fast R-CNN recipe of ``fast_rcnn_vgg16_voc.py`` (VOC 2007 trainval, 2000 proposals per image,
two images per batch, shortest edge 600 / longest 1000, flip, 40k iterations with the LR divided
by 10 after 30k, weight decay 5e-4) on the R50-C4 model of ``common/models/fast_rcnn_c4.py``.
LR 0.0025: detectron2's 0.02 at 16 images, scaled linearly to 2. ImageNet R-50 weights (BGR,
MSRA layout) go in ``train.init_checkpoint``.

Deviations from the paper (VGG16): the network, RoIAlign 14x14 + res5 instead of RoIPool 7x7 +
fc6/fc7, L1 box loss, 512 RoIs per image, 2.5x the LR with a 500-iteration warmup (how
detectron2 trains frozen-BN ResNets).
"""

from ..common.models.fast_rcnn_c4 import model
from ..common.schedules import step_schedule
from .fast_rcnn_vgg16_voc import dataloader, optimizer, train

# The VGG16 config's data and schedule length; the R50 backbone's own input format and LR.
dataloader.train.mapper.image_format = model.input_format
dataloader.test.mapper.image_format = model.input_format

model.roi_heads.num_classes = 20

optimizer.lr = 0.0025
optimizer.params.weight_decay_bias = None  # decay biases like weights, as the other R50 configs
lr_multiplier = step_schedule(train.max_iter, steps=(30000 / 40000,), warmup_iter=500)
train.output_dir = "./output/voc_fast_rcnn_R_50_C4"
