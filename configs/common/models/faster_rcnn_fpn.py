"""Faster R-CNN with a ResNet-50-FPN backbone (Lin et al. 2017), detectron2's defaults.

Shapes are inferred: the RPN head's channels and anchor count, the pooler scales, the box
head's input size and the predictor's class count all come from the parts they attach to.
``num_classes`` is set once, on ``model.roi_heads``.
"""

from rcnnzoo.config import LazyCall as L
from rcnnzoo.modeling import (
    FPN,
    RPN,
    DefaultAnchorGenerator,
    FastRCNNConvFCHead,
    FastRCNNOutputLayers,
    GeneralizedRCNN,
    ResNet,
    RoIAlign,
    StandardROIHeads,
    StandardRPNHead,
)

model = L(GeneralizedRCNN)(
    backbone=L(FPN)(
        # stride in the 1x1 convs: the layout of detectron2's MSRA ImageNet and COCO R-50 weights
        bottom_up=L(ResNet)(
            depth=50,
            out_features=["res2", "res3", "res4", "res5"],
            norm="FrozenBN",
            freeze_at=2,
            stride_in_1x1=True,
        ),
        in_features=["res2", "res3", "res4", "res5"],
        out_channels=256,
        top_block="maxpool",
    ),
    proposal_generator=L(RPN)(
        in_features=["p2", "p3", "p4", "p5", "p6"],
        head=L(StandardRPNHead)(),
        anchor_generator=L(DefaultAnchorGenerator)(
            sizes=[[32], [64], [128], [256], [512]], aspect_ratios=[[0.5, 1.0, 2.0]], offset=0.0
        ),
        batch_size_per_image=256,
        positive_fraction=0.5,
        pre_nms_topk=(2000, 1000),
        post_nms_topk=(1000, 1000),
        nms_thresh=0.7,
    ),
    roi_heads=L(StandardROIHeads)(
        in_features=["p2", "p3", "p4", "p5"],
        num_classes=80,
        box_pooler=L(RoIAlign)(output_size=7, sampling_ratio=0, aligned=True),
        box_head=L(FastRCNNConvFCHead)(conv_dims=[], fc_dims=[1024, 1024]),
        box_predictor=L(FastRCNNOutputLayers)(test_score_thresh=0.05, test_nms_thresh=0.5, test_topk_per_image=100),
        batch_size_per_image=512,
        positive_fraction=0.25,
    ),
    # ImageNet mean in BGR, std 1: the MSRA/caffe convention of detectron2's R-50 weights
    pixel_mean=[103.530, 116.280, 123.675],
    pixel_std=[1.0, 1.0, 1.0],
    input_format="BGR",
)
