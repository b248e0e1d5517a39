"""Faster R-CNN ResNet-50-C4 (He et al. 2016): RPN on res4, res5 as the per-RoI box head."""

from rcnnzoo.config import LazyCall as L
from rcnnzoo.modeling import (
    RPN,
    DefaultAnchorGenerator,
    FastRCNNOutputLayers,
    GeneralizedRCNN,
    Res5BoxHead,
    ResNet,
    RoIAlign,
    StandardROIHeads,
    StandardRPNHead,
)

model = L(GeneralizedRCNN)(
    # stride in the 1x1 convs (backbone and res5 head): the layout of detectron2's MSRA weights
    backbone=L(ResNet)(depth=50, out_features=["res4"], norm="FrozenBN", freeze_at=2, stride_in_1x1=True),
    proposal_generator=L(RPN)(
        in_features=["res4"],
        head=L(StandardRPNHead)(),
        anchor_generator=L(DefaultAnchorGenerator)(sizes=[[32, 64, 128, 256, 512]], aspect_ratios=[[0.5, 1.0, 2.0]]),
        pre_nms_topk=(12000, 6000),
        post_nms_topk=(2000, 1000),
        nms_thresh=0.7,
    ),
    roi_heads=L(StandardROIHeads)(
        in_features=["res4"],
        num_classes=80,
        box_pooler=L(RoIAlign)(output_size=14, sampling_ratio=0, aligned=True),
        box_head=L(Res5BoxHead)(depth=50, norm="FrozenBN", stride_in_1x1=True),
        box_predictor=L(FastRCNNOutputLayers)(),
        batch_size_per_image=512,
        positive_fraction=0.25,
    ),
    pixel_mean=[103.530, 116.280, 123.675],
    pixel_std=[1.0, 1.0, 1.0],
    input_format="BGR",
)
