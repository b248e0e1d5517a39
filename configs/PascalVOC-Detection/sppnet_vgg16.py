"""SPPnet VGG16 on PASCAL VOC 2007 with selective search proposals (the softmax model).

The model is ``common/models/sppnet_vgg16.py``: every conv frozen, the 1/2/3/6 pyramid on
conv5_3, fc6/fc7 fine-tuned with a 21-way softmax and class-specific box regression. Data as the
paper's single-scale setting: shortest edge 688 (longest at most 1000), horizontal flip, VOC 2007
trainval for training, VOC 2007 test (11-point AP) for evaluation, 2000 proposals per image.

Deviations: the paper fine-tunes on cached conv5 features for 250k mini-batches at LR 1e-4 and
50k at 1e-5; here each iteration runs the (frozen) convs on two images (64 RoIs each) and the
schedule is Fast R-CNN's (LR 0.001 for 30k iterations, 0.0001 for 10k), since fc6 starts from
scratch (see the model's docstring). Proposal files as in ``fast_rcnn_vgg16.py``.
"""

from rcnnzoo.config import LazyCall as L
from rcnnzoo.data import RandomFlip, ResizeShortestEdge

from ..common.data.voc import dataloader
from ..common.models.sppnet_vgg16 import model
from ..common.optim import SGD as optimizer
from ..common.schedules import step_schedule
from ..common.train import train

dataloader.train.dataset.names = "voc_2007_trainval"
dataloader.train.dataset.proposal_files = ["./output/proposals/selective_search_voc_2007_trainval.npz"]
dataloader.test.dataset.proposal_files = ["./output/proposals/selective_search_voc_2007_test.npz"]
dataloader.train.mapper.augmentations = [
    L(ResizeShortestEdge)(short_edge_length=688, max_size=1000),
    L(RandomFlip)(horizontal=True),
]
dataloader.test.mapper.augmentations = [L(ResizeShortestEdge)(short_edge_length=688, max_size=1000)]
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
train.output_dir = "./output/voc_sppnet_vgg16"
