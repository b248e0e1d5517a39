"""Fast R-CNN ResNet-50-C4: the Faster R-CNN R50-C4 model (He et al. 2016) on precomputed
proposals, as Fast R-CNN (Girshick 2015) trains a detector on selective search boxes.

res1-res4 once per image (res1/res2 frozen), RoIs pooled 14x14 from res4 (stride 16), res5 run per
RoI and averaged, then the softmax and class-specific box outputs. The proposals come from a file
attached to the dataset and are read by ``PrecomputedProposals`` (by registry name); RoI sampling
follows Fast R-CNN: background RoIs have IoU in [0.1, 0.5), up to 25% foreground.

Deviations from the Fast R-CNN paper, whose network is VGG16: ResNet-50 with frozen BN, RoIAlign
(detectron2's C4 choice) instead of RoIPool, L1 box loss, 512 RoIs per image as detectron2's C4.
"""

from rcnnzoo.config import LazyCall as L
from rcnnzoo.modeling import Matcher

from .faster_rcnn_c4 import model

model.proposal_generator = L("PrecomputedProposals")(topk=(2000, 1000))
model.roi_heads.proposal_matcher = L(Matcher)(thresholds=[0.1, 0.5], labels=[-1, 0, 1])
