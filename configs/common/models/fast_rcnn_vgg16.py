"""Fast R-CNN on VGG16 (Girshick 2015): precomputed proposals, RoIPool 7x7, fc6/fc7, softmax and
class-specific box regression trained jointly (the multi-task loss, lambda = 1).

From the paper: VGG16 conv5_3 (stride 16) with conv1_x and conv2_x frozen, RoIPool 7x7, fc6/fc7
(4096-d, dropout 0.5), a (K+1)-way softmax and 4K box outputs (initialised with std 0.01 and
0.001), smooth L1 box loss on targets scaled by (10, 10, 5, 5) (the paper normalises them to unit
variance), 64 RoIs per image of which at most 25% foreground (IoU >= 0.5), background RoIs with
IoU in [0.1, 0.5) (below 0.1 they are never sampled), the ground-truth boxes among the training
RoIs, 2000 selective search proposals per image, per-class NMS at 0.3 at test.

Proposals come from a file attached to the dataset (``dataloader.*.dataset.proposal_files``) and
are read by the ``PrecomputedProposals`` generator (by registry name).

Deviations: truncated SVD of fc6/fc7 (the paper's speed-up at test) is not applied.
"""

from rcnnzoo.config import LazyCall as L
from rcnnzoo.modeling import Matcher

from .faster_rcnn_vgg16 import model

model.proposal_generator = L("PrecomputedProposals")(topk=(2000, 2000))
model.roi_heads.batch_size_per_image = 64
model.roi_heads.positive_fraction = 0.25
model.roi_heads.proposal_matcher = L(Matcher)(thresholds=[0.1, 0.5], labels=[-1, 0, 1])
model.roi_heads.box_predictor.smooth_l1_beta = 1.0
model.roi_heads.box_predictor.test_nms_thresh = 0.3
