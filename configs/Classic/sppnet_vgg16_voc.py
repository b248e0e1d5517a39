"""SPPnet VGG16 on PASCAL VOC 2007 with selective search proposals (the softmax model).

The model is ``common/models/sppnet_vgg16.py``: every conv frozen, the 1/2/3/6 pyramid on
conv5_3, fc6/fc7 fine-tuned with a 21-way softmax and class-specific box regression. Data as the
paper's single-scale setting: shortest edge 688 (longest at most 1000), horizontal flip, VOC 2007
trainval for training, VOC 2007 test (11-point AP) for evaluation, 2000 proposals per image.

Deviations: the paper fine-tunes on cached conv5 features for 250k mini-batches at LR 1e-4 and
50k at 1e-5; here each iteration runs the (frozen) convs on two images (64 RoIs each) and the
schedule is Fast R-CNN's (LR 0.001 for 30k iterations, 0.0001 for 10k), since fc6 starts from
scratch (see the model's docstring). Proposal files as in ``fast_rcnn_vgg16_voc.py``.
"""

from rcnnzoo.config import LazyCall as L
from rcnnzoo.data import RandomFlip, ResizeShortestEdge

from ..common.models.sppnet_vgg16 import model
from .fast_rcnn_vgg16_voc import dataloader, lr_multiplier, optimizer, train

# Fast R-CNN's data, schedule and optimizer; the paper's single scale of 688.
dataloader.train.mapper.augmentations = [
    L(ResizeShortestEdge)(short_edge_length=688, max_size=1000),
    L(RandomFlip)(horizontal=True),
]
dataloader.test.mapper.augmentations = [L(ResizeShortestEdge)(short_edge_length=688, max_size=1000)]
dataloader.train.mapper.image_format = model.input_format
dataloader.test.mapper.image_format = model.input_format

model.roi_heads.num_classes = 20

train.output_dir = "./output/voc_sppnet_vgg16"
