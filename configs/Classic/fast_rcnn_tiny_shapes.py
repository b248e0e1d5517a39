"""Fast R-CNN (Girshick 2015) on the shapes dataset, on the CPU: selective search proposals,
RoIPool 7x7, two FC layers, softmax and class-specific box regression trained jointly.

The proposals are precomputed once (selective search "fast", at most 2000 per image)::

    python tools/precompute_proposals.py --config-file Classic/selective_search_shapes.py \\
        --dataset shapes_train --output ./output/proposals/selective_search_shapes_train.npz
    python tools/precompute_proposals.py --config-file Classic/selective_search_shapes.py \\
        --dataset shapes_val --output ./output/proposals/selective_search_shapes_val.npz

then one command trains and evaluates::

    python tools/train_net.py --config-file Classic/fast_rcnn_tiny_shapes.py

As the paper: the whole image through the CNN once, each proposal RoI-pooled (max pooling, 7x7)
from one feature map, fc6/fc7, a (K+1)-way softmax and 4K box outputs under the multi-task loss
(smooth L1, lambda = 1), the ground-truth boxes among the training RoIs, 64 RoIs per image with at
most a quarter foreground (IoU >= 0.5) and background RoIs from IoU [0.1, 0.5), horizontal flip,
per-class NMS at 0.3.

Deviations, for a CPU and for this data:

* the RoIs are pooled from TinyNet's c3 (stride 8, 32 channels; the paper: conv5_3, stride 16):
  a quarter of the shapes are under 22 px (square root of the box area), and on this data stride
  8 gives far better AP than stride 16 (AP50 0.69 vs 0.42 after 1200 iterations);
* no ImageNet pre-training: TinyNet trains from scratch, every layer, with BatchNorm and AdamW
  (LR 2e-3, the quick start's; the paper: SGD at LR 0.001 from VGG16 with conv1-2 frozen),
  256-d FC layers (the paper: 4096 with dropout), 3600 iterations;
* 4 images per batch (the paper: 2), multi-scale training as the quick start (short side 224,
  256 or 288; the paper: one scale), tested at 288;
* no truncated SVD at test.
"""

from rcnnzoo.config import LazyCall as L
from rcnnzoo.modeling import (
    FastRCNNConvFCHead,
    FastRCNNOutputLayers,
    GeneralizedRCNN,
    Matcher,
    PrecomputedProposals,
    RoIPool,
    StandardROIHeads,
    TinyNet,
)

from ..common.data.shapes import dataloader
from ..common.optim import AdamW as optimizer
from ..common.schedules import step_schedule
from ..common.train import train

model = L(GeneralizedRCNN)(
    backbone=L(TinyNet)(widths=[16, 32, 64, 128], depths=[1, 1, 1, 1], norm="BN", out_features=["c3"]),
    proposal_generator=L(PrecomputedProposals)(topk=(2000, 2000)),
    roi_heads=L(StandardROIHeads)(
        in_features=["c3"],
        num_classes=3,
        box_pooler=L(RoIPool)(output_size=7),
        box_head=L(FastRCNNConvFCHead)(fc_dims=[256, 256]),
        box_predictor=L(FastRCNNOutputLayers)(
            smooth_l1_beta=1.0, test_score_thresh=0.05, test_nms_thresh=0.3
        ),
        batch_size_per_image=64,
        positive_fraction=0.25,
        proposal_matcher=L(Matcher)(thresholds=[0.1, 0.5], labels=[-1, 0, 1]),
    ),
    pixel_mean=[103.530, 116.280, 123.675],
    pixel_std=[57.375, 57.120, 58.395],
    input_format="BGR",
)

dataloader.train.dataset.proposal_files = ["./output/proposals/selective_search_shapes_train.npz"]
dataloader.test.dataset.proposal_files = ["./output/proposals/selective_search_shapes_val.npz"]
dataloader.test.mapper.augmentations[0].short_edge_length = 288
dataloader.train.total_batch_size = 4

optimizer.lr = 2e-3

train.max_iter = 3600
lr_multiplier = step_schedule(train.max_iter, steps=(0.75, 0.92), warmup_iter=100)
train.output_dir = "./output/shapes_fast_rcnn_tiny"
train.eval_period = 0  # evaluate once, at the end
train.checkpointer.period = 1200
train.log_period = 20
train.device = "cpu"
train.seed = 0
