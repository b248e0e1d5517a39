"""Mask R-CNN ResNet-50-C4 (He et al. 2017, Fig. 4 left): res5 shared by the box and mask branches.

The Faster R-CNN R50-C4 model with :class:`Res5ROIHeads`: RoIs pooled 14x14 from res4 go through
res5 once (7x7 maps); the box predictor reads their average, the mask head deconvolves the maps
of the foreground RoIs to 14x14 per-class masks (no 3x3 convs).
"""

from rcnnzoo.config import LazyCall as L
from rcnnzoo.modeling import MaskRCNNConvUpsampleHead, Res5ROIHeads

from .faster_rcnn_c4 import model

model.roi_heads._target_ = Res5ROIHeads
model.roi_heads.mask_head = L(MaskRCNNConvUpsampleHead)(conv_dims=[], deconv_dim=256)
