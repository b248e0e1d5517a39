"""Fast R-CNN VGG16 on PASCAL VOC 2007, the paper's recipe (Girshick 2015, Table 1: 66.9 mAP).

Trains on VOC 2007 trainval with 2000 selective search proposals per image, tests on VOC 2007
test (11-point AP). Two images per batch (64 RoIs each), shortest edge 600 and longest at most
1000 (single scale), horizontal flip, SGD with momentum 0.9, weight decay 5e-4 (none on biases),
LR 0.001 for 30k iterations then 0.0001 for 10k. ImageNet VGG16 weights (torchvision's, RGB) go
in ``train.init_checkpoint``; the model is ``common/models/fast_rcnn_vgg16.py``.

The proposal files are expected under ``./output/proposals/`` (or point
``dataloader.{train,test}.dataset.proposal_files`` elsewhere); make them with selective search
in "fast" mode, as the paper, e.g.::

    python tools/precompute_proposals.py --config-file <a SelectiveSearch config on VOC> \
        --dataset voc_2007_trainval --output ./output/proposals/selective_search_voc_2007_trainval.npz

and the same for ``voc_2007_test``.

Deviations: biases learn at the base LR (the paper doubles it); no truncated SVD at test.
"""

from rcnnzoo.config import LazyCall as L
from rcnnzoo.data import RandomFlip, ResizeShortestEdge

from ..common.data.voc import dataloader
from ..common.models.fast_rcnn_vgg16 import model
from ..common.optim import SGD as optimizer
from ..common.schedules import step_schedule
from ..common.train import train

dataloader.train.dataset.names = "voc_2007_trainval"
dataloader.train.dataset.proposal_files = ["./output/proposals/selective_search_voc_2007_trainval.npz"]
dataloader.test.dataset.proposal_files = ["./output/proposals/selective_search_voc_2007_test.npz"]
dataloader.train.mapper.augmentations = [
    L(ResizeShortestEdge)(short_edge_length=600, max_size=1000),
    L(RandomFlip)(horizontal=True),
]
dataloader.test.mapper.augmentations = [L(ResizeShortestEdge)(short_edge_length=600, max_size=1000)]
dataloader.train.mapper.image_format = model.input_format
dataloader.test.mapper.image_format = model.input_format
dataloader.train.total_batch_size = 2

model.roi_heads.num_classes = 20

optimizer.lr = 0.001
optimizer.weight_decay = 5e-4
optimizer.params.weight_decay_bias = 0.0
train.max_iter = 40000
lr_multiplier = step_schedule(train.max_iter, steps=(30000 / 40000,), warmup_iter=0)
train.checkpointer.period = 5000
train.eval_period = 10000
train.output_dir = "./output/voc_fast_rcnn_vgg16"
