"""Faster R-CNN on VGG16 as in the paper (Ren et al. 2015) and the seed simple-faster-rcnn-pytorch.

conv5_3 at stride 16; 9 anchors (128/256/512 x 0.5/1/2) on that one map; RoIPool 7x7;
fc6/fc7; 12000/2000 pre/post-NMS proposals in training, 6000/300 at test; 128 RoIs per
image with a quarter foreground (the seed's n_sample / pos_ratio).

Deviations from the paper, on purpose:
- the RPN uses 256 anchors per image with BCE on one logit per anchor (the paper's two-way
  softmax is equivalent up to parametrization);
- the box loss is L1 (smooth_l1_beta=0), detectron2's choice; set smooth_l1_beta=1.0 for the paper's smooth L1;
- anchors crossing the border are kept (the paper ignores them): set
  ``anchor_boundary_thresh=0`` to follow the paper.
"""

from rcnnzoo.config import LazyCall as L
from rcnnzoo.modeling import (
    RPN,
    VGG16,
    DefaultAnchorGenerator,
    FastRCNNOutputLayers,
    GeneralizedRCNN,
    RoIPool,
    StandardROIHeads,
    StandardRPNHead,
    VGG16BoxHead,
)

model = L(GeneralizedRCNN)(
    backbone=L(VGG16)(out_features=["conv5"], freeze_at=4),
    proposal_generator=L(RPN)(
        in_features=["conv5"],
        head=L(StandardRPNHead)(conv_dims=[512]),
        anchor_generator=L(DefaultAnchorGenerator)(sizes=[[128, 256, 512]], aspect_ratios=[[0.5, 1.0, 2.0]]),
        batch_size_per_image=256,
        positive_fraction=0.5,
        pre_nms_topk=(12000, 6000),
        post_nms_topk=(2000, 300),
        nms_thresh=0.7,
        min_box_size=16.0,
    ),
    roi_heads=L(StandardROIHeads)(
        in_features=["conv5"],
        num_classes=80,
        box_pooler=L(RoIPool)(output_size=7),
        box_head=L(VGG16BoxHead)(),
        box_predictor=L(FastRCNNOutputLayers)(test_score_thresh=0.05, test_nms_thresh=0.3),
        batch_size_per_image=128,
        positive_fraction=0.25,
    ),
    # torchvision's ImageNet VGG16 weights take RGB in [0, 1] normalized by mean/std; in 0-255 units:
    pixel_mean=[123.675, 116.280, 103.530],
    pixel_std=[58.395, 57.120, 57.375],
    input_format="RGB",
)
