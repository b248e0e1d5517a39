"""Quick start mixing generations: the Shapes Faster R-CNN (RPN, TinyNet-FPN, RoIAlign) with
R-CNN's per-class linear SVMs as its box classifier, all trained together by SGD.

As ``faster_rcnn_tiny_fpn.py`` except two parts. The predictor is ``LinearSVMOutputLayers``:
3 one-vs-rest SVMs (hinge loss; the RoIs the matcher labels k are positives of class k,
negatives are RoIs below 0.3 IoU with that class) and Fast R-CNN's box regression; its scores
are sigmoids of the SVM margins. The RoI matcher leaves RoIs whose best IoU is in [0.3, 0.5)
out of the mini-batches, so that every background RoI is a negative by R-CNN's rule.
"""

from rcnnzoo.config import LazyCall as L
from rcnnzoo.modeling import LinearSVMOutputLayers, Matcher

from .faster_rcnn_tiny_fpn import dataloader, lr_multiplier, model, optimizer, train

model.roi_heads.box_predictor = L(LinearSVMOutputLayers)(loss_type="hinge", test_score_thresh=0.05)
model.roi_heads.proposal_matcher = L(Matcher)(thresholds=[0.3, 0.5], labels=[0, -1, 1])
train.output_dir = "./output/shapes_faster_rcnn_svm_tiny_fpn"
