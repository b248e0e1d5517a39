"""Mask R-CNN with a ResNet-50-FPN backbone (He et al. 2017), detectron2's defaults.

The Faster R-CNN R50-FPN model plus the mask branch: RoIAlign 14x14 (aligned, adaptive sampling)
on p2-p5 with the FPN level assignment, four 256-d 3x3 convs, a 2x2 stride-2 deconv and a 1x1
per-class predictor giving 28x28 masks. Its input channels and class count are inferred.
"""

from rcnnzoo.config import LazyCall as L
from rcnnzoo.modeling import MaskRCNNConvUpsampleHead, RoIAlign

from .faster_rcnn_fpn import model

model.roi_heads.mask_in_features = ["p2", "p3", "p4", "p5"]
model.roi_heads.mask_pooler = L(RoIAlign)(output_size=14, sampling_ratio=0, aligned=True)
model.roi_heads.mask_head = L(MaskRCNNConvUpsampleHead)(conv_dims=[256, 256, 256, 256], deconv_dim=256)
