"""Faster R-CNN VGG16 on PASCAL VOC 2007 with the paper's 4-step alternating training.

The model, data (VOC 2007 trainval / test, shortest edge 600, longest at most 1000, flip),
SGD (momentum 0.9, weight decay 5e-4) and ImageNet VGG16 weights (``train.init_checkpoint``) are
those of ``PascalVOC-Detection/faster_rcnn_vgg16.py``; the schedule is the paper's for VOC (Ren et al.
2015, §3.2 and §4.1, as released in py-faster-rcnn's ``train_faster_rcnn_alt_opt.py``):

| step | what trains | iterations | images / batch | LR |
|---|---|---|---|---|
| ``1_rpn`` | RPN + conv3_1 .. conv5_3, from ImageNet | 80k | 1 | 0.001, 0.0001 after 60k |
| ``2_fast_rcnn`` | Fast R-CNN on step 1's proposals, from ImageNet | 40k | 2 | 0.001, 0.0001 after 30k |
| ``3_rpn_shared`` | the RPN's own layers; all conv layers frozen | 80k | 1 | 0.001, 0.0001 after 60k |
| ``4_fast_rcnn_shared`` | fc6, fc7 and the predictor; conv layers and RPN frozen | 40k | 2 | 0.001, 0.0001 after 30k |

240k iterations in all (``train.max_iter``); each step's iterations are a share of it, so
``train.max_iter=70000`` (the joint config's length) scales all four by 7/24 while keeping the
paper's proportions. conv1_x and conv2_x stay frozen in every step (the backbone's ``freeze_at=4``),
as in the paper. Evaluation (VOC 2007 test, 11-point AP) runs during and after step 4.

Deviations from the paper:

* the ones of the joint config's model (``common/models/faster_rcnn_vgg16.py``): the L1 box loss,
  anchors crossing the image border kept in training, torchvision's RGB VGG16 weights;
* step 2's and step 4's proposals are computed on the fly, on each flipped / resized training
  image, by a frozen copy of the proposing step's network, with the RPN's training top-k (12000
  pre-NMS, 2000 post-NMS), instead of once over the training set with no pre-NMS limit;
* the RPN steps build (and freeze) the RoI heads they do not use, and the Fast R-CNN steps carry
  the RPN they do not train: every step's checkpoint is a whole Faster R-CNN.
"""

from ..common.schedules import step_schedule
from .faster_rcnn_vgg16 import dataloader, model, optimizer, train

train.max_iter = 240000
# A function of each step's progress: x0.1 after 3/4 of the step, no warmup (the paper has none).
lr_multiplier = step_schedule(train.max_iter, steps=(0.75,), warmup_iter=0)
train.output_dir = "./output/voc_faster_rcnn_vgg16_alternating"

_RPN_STEP = 80000 / 240000
_FAST_RCNN_STEP = 40000 / 240000
_TWO_IMAGES = ["dataloader.train.total_batch_size=2"]  # py-faster-rcnn's IMS_PER_BATCH for Fast R-CNN
train.stages = [
    dict(name="1_rpn", share=_RPN_STEP, train_mode="rpn", init_from="init_checkpoint"),
    dict(
        name="2_fast_rcnn",
        share=_FAST_RCNN_STEP,
        train_mode="detector",
        init_from="init_checkpoint",
        proposals_from="1_rpn",
        overrides=_TWO_IMAGES,
    ),
    dict(name="3_rpn_shared", share=_RPN_STEP, train_mode="rpn", init_from="previous", freeze=["backbone"]),
    dict(
        name="4_fast_rcnn_shared",
        share=_FAST_RCNN_STEP,
        train_mode="detector",
        init_from="previous",
        freeze=["backbone"],
        overrides=_TWO_IMAGES,
    ),
]
