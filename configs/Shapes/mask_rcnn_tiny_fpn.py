"""Quick start: Mask R-CNN on the built-in shapes dataset, CPU; the Faster R-CNN quick start plus masks.

The mask branch is scaled down like the rest of the model: RoIAlign 14x14 on the 32-channel
FPN levels, two 32-d 3x3 convs, a 32-d deconv to 28x28 per-class masks. The shapes' RLE masks
are decoded by the mapper and follow its resizes and flips.
"""

from rcnnzoo.config import LazyCall as L
from rcnnzoo.modeling import MaskRCNNConvUpsampleHead, RoIAlign

from .faster_rcnn_tiny_fpn import dataloader, lr_multiplier, model, optimizer, train

model.roi_heads.mask_in_features = ["p2", "p3", "p4", "p5"]
model.roi_heads.mask_pooler = L(RoIAlign)(output_size=14, sampling_ratio=0, aligned=True)
model.roi_heads.mask_head = L(MaskRCNNConvUpsampleHead)(conv_dims=[32, 32], deconv_dim=32)

dataloader.train.mapper.use_instance_mask = True
dataloader.evaluator.tasks = ("bbox", "segm")

train.output_dir = "./output/shapes_mask_rcnn_tiny_fpn"
