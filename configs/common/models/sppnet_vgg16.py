"""SPPnet (He et al. 2014) on VGG16: conv layers once per image, a spatial pyramid of each window
on conv5_3, fc6/fc7, and here a softmax classifier with class-specific box regression.

From the paper: the 4-level pyramid 1x1, 2x2, 3x3, 6x6 (50 bins per channel, so 25600-d on
conv5_3's 512 channels) with its window-to-cell projection (:class:`SPPPooler`); only the layers
after the pyramid are fine-tuned (every conv frozen, ``freeze_at=13``); fine-tuning positives
overlap a ground-truth box by [0.5, 1], negatives by [0.1, 0.5), a quarter of each mini-batch
positive; 2000 selective search windows per image (``PrecomputedProposals``); NMS at 0.3.

Why VGG16 and not the paper's ZF-5: the repository has VGG16 (with torchvision's ImageNet
weights) and no ZF-5, and the Fast R-CNN paper's SPPnet baseline is VGG16 too, so the classic
configs (SPPnet, Fast R-CNN, Faster R-CNN) compare on one network.

Deviations: the paper pre-trains the network with the pyramid on ImageNet, so its fc6 fits the
pooled size; torchvision's fc6 expects 7x7x512, so fc6 starts from scratch here (fc7 and the
convs from ImageNet). The paper then trains per-class SVMs on fc7 and a box regressor on the
pooled conv5 features, post hoc; here the softmax and the box regressor on fc7 train jointly, as
in Fast R-CNN (for the SVMs see ``Classic/sppnet_vgg16_svm_voc.py``). Single scale only
(the paper also pools each window from the best of five scales).
"""

from rcnnzoo.config import LazyCall as L
from rcnnzoo.modeling import SPPPooler

from .fast_rcnn_vgg16 import model

model.backbone.freeze_at = 13
model.roi_heads.box_pooler = L(SPPPooler)(levels=(1, 2, 3, 6))
