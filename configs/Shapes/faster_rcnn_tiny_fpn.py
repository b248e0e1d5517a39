"""Quick start: Faster R-CNN, TinyNet-FPN from scratch, on the built-in shapes dataset, CPU.

Trains and evaluates in 6-7 minutes on 2 CPU cores. Compared with the R50-FPN COCO model:
a small backbone trained from scratch (trainable BN, widths 16-128), a 32-channel FPN, anchors
halved for ~256 px images, 500 pre-NMS / 300 (train) or 200 (test) post-NMS proposals, 128
sampled RoIs per image, a 256-d box head, and AdamW (lr 2e-3) instead of SGD. On 2 CPU cores the RoIAlign backward and the
RPN's NMS cost more than the backbone, hence the narrow FPN and the fewer proposals.
"""

from rcnnzoo.config import LazyCall as L
from rcnnzoo.modeling import TinyNet

from ..common.data.shapes import dataloader
from ..common.models.faster_rcnn_fpn import model
from ..common.optim import AdamW as optimizer
from ..common.schedules import step_schedule
from ..common.train import train

model.backbone.bottom_up = L(TinyNet)(widths=[16, 32, 64, 128], depths=[1, 1, 1, 1], norm="BN")
model.backbone.in_features = ["c2", "c3", "c4", "c5"]
model.backbone.out_channels = 32
model.proposal_generator.anchor_generator.sizes = [[16], [32], [64], [128], [256]]
model.proposal_generator.pre_nms_topk = (500, 500)
model.proposal_generator.post_nms_topk = (300, 200)
model.roi_heads.num_classes = 3
model.roi_heads.batch_size_per_image = 128
model.roi_heads.box_head.fc_dims = [256, 256]
model.pixel_std = [57.375, 57.120, 58.395]

# AdamW, not SGD: from scratch in 1200 iterations it learns the shapes far faster (AP50 0.87
# vs 0.62 for SGD at its best learning rate, measured on 2 CPU cores).
optimizer.lr = 2e-3

# Small objects gain from testing a little above the training scales' middle.
dataloader.test.mapper.augmentations[0].short_edge_length = 288

train.max_iter = 1200
lr_multiplier = step_schedule(train.max_iter, steps=(0.75, 0.92), warmup_iter=100)
train.output_dir = "./output/shapes_faster_rcnn_tiny_fpn"
train.eval_period = 0  # evaluate once, at the end
train.checkpointer.period = 400
train.log_period = 20
train.device = "cpu"
train.seed = 0
