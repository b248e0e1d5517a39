"""R-CNN (Girshick et al. 2014) on the shapes dataset, trained in the paper's stages, on the CPU.

Each selective search proposal is cropped from the image with context, warped to 64 x 64 and run
through a TinyNet (c5: 2 x 2 x 128, this model's pool5), two 256-d FC layers (fc6, fc7) and 3
one-vs-rest linear SVMs; class-specific box regressors read pool5. The proposals are precomputed
(selective search "fast", at most 2000 per image, in practice 100-300 on these images)::

    python tools/precompute_proposals.py --config-file Classic/selective_search_shapes.py \\
        --dataset shapes_train --output ./output/proposals/selective_search_shapes_train.npz
    python tools/precompute_proposals.py --config-file Classic/selective_search_shapes.py \\
        --dataset shapes_val --output ./output/proposals/selective_search_shapes_val.npz

then one command trains and evaluates::

    python tools/train_net.py --config-file Classic/rcnn_tiny_shapes.py

It runs three stages (:mod:`rcnnzoo.engine.rcnn_stages`), each in ``<output_dir>/<stage>/``:

1. ``1_finetune`` (2400 iterations): the CNN trained on warped regions with a 4-way softmax
   (the box predictor is replaced by ``FastRCNNOutputLayers`` for this stage; box loss off, as
   the paper fine-tunes the classifier only): 4 images per batch, 32 windows each, at most a quarter of them positive
   (IoU >= 0.5 with a ground-truth box, which is among the windows), the rest background;
2. ``2_svms``: fc7 of every ground-truth box and proposal of the training set cached (test-time
   images, no flip) to ``region_features.pt``; per class an SVM (hinge loss, C = 0.001 on features
   scaled to a mean norm of 20, positives weighted 2) on the ground-truth boxes against the
   proposals below 0.3 IoU with the class, with hard negative mining; installed in the model;
3. ``3_box_regressors``: ridge regression (lambda = 1000) from pool5 of the proposals with
   IoU >= 0.6 to their box, from stage 2's cache; installed in the model.

``<output_dir>/model_final.pth`` is stage 3's model (SVM scores, pool5 box regression, per-class
NMS at 0.3), evaluated on shapes-val (COCO AP) at the end.

Deviations from the paper, for a CPU and for this data:

* no ImageNet pre-training: TinyNet trains from scratch in stage 1, with AdamW (LR 2e-3, as the
  quick start; the paper: SGD at LR 0.001 from an ImageNet network), BatchNorm in the CNN;
* 64 x 64 crops with 4 px of context (the paper: 227 with 16, the same share of the crop);
* the training windows of a batch come from its 4 images, not uniformly from the whole set;
* the images keep their size (selective search ran at short side 256, boxes mapped back);
* the paper's other deviations from its own pipeline are listed in :class:`~rcnnzoo.modeling.RCNN`
  and :mod:`rcnnzoo.engine.rcnn_stages`.
"""

from rcnnzoo.config import LazyCall as L
from rcnnzoo.data import RandomFlip
from rcnnzoo.engine.rcnn_stages import FitBoxRegressors, TrainSVMs
from rcnnzoo.modeling import (
    RCNN,
    FastRCNNConvFCHead,
    FastRCNNOutputLayers,
    LinearSVMOutputLayers,
    PrecomputedProposals,
    TinyNet,
)

from ..common.data.shapes import dataloader
from ..common.optim import AdamW as optimizer
from ..common.schedules import step_schedule
from ..common.train import train

model = L(RCNN)(
    backbone=L(TinyNet)(widths=[16, 32, 64, 128], depths=[1, 1, 1, 1], norm="BN"),
    proposal_generator=L(PrecomputedProposals)(topk=(2000, 2000)),
    box_head=L(FastRCNNConvFCHead)(fc_dims=[256, 256]),
    box_predictor=L(LinearSVMOutputLayers)(test_score_thresh=0.05, test_nms_thresh=0.3),
    num_classes=3,
    in_feature="c5",
    input_size=64,
    context_padding=4,
    crop_batch_size=256,
    batch_size_per_image=32,
    positive_fraction=0.25,
    box_regression="pool5",
    pixel_mean=[103.530, 116.280, 123.675],
    pixel_std=[57.375, 57.120, 58.395],
    input_format="BGR",
)

dataloader.train.dataset.proposal_files = ["./output/proposals/selective_search_shapes_train.npz"]
dataloader.test.dataset.proposal_files = ["./output/proposals/selective_search_shapes_val.npz"]
# R-CNN warps every region to the same size: resizing the images would change nothing but the cost.
dataloader.train.mapper.augmentations = [L(RandomFlip)(horizontal=True)]
dataloader.test.mapper.augmentations = []
dataloader.train.total_batch_size = 4

optimizer.lr = 2e-3

train.max_iter = 2400
lr_multiplier = step_schedule(train.max_iter, steps=(0.75,), warmup_iter=100)
train.stages = [
    dict(
        name="1_finetune",
        share=1.0,
        replace={
            "model.box_predictor": L(FastRCNNOutputLayers)(
                loss_weight={"loss_box_reg": 0.0}, test_score_thresh=0.05, test_nms_thresh=0.3
            )
        },
    ),
    dict(name="2_svms", run=L(TrainSVMs)(C=0.001, positive_weight=2.0, hard_negative_rounds=3)),
    dict(name="3_box_regressors", run=L(FitBoxRegressors)(features_from="2_svms", lam=1000.0)),
]
train.output_dir = "./output/shapes_rcnn_tiny"
train.eval_period = 0  # evaluate once, at the end
train.checkpointer.period = 800
train.log_period = 20
train.device = "cpu"
train.seed = 0
