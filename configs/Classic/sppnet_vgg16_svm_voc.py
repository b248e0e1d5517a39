"""SPPnet VGG16 with per-class linear SVMs on the fine-tuned fc7 features (the paper's detector).

Starts from the softmax model of ``sppnet_vgg16_voc.py`` (its ``model_final.pth`` in
``train.init_checkpoint``; its ``cls_score`` is dropped, the SVMs start fresh), keeps the convs
and fc6/fc7 fixed (``train.freeze``, dropout off), and trains 20 one-vs-rest SVMs (``LinearSVMOutputLayers``)
with the box regressor. The SVMs follow the paper: hinge loss, positives are the ground-truth
boxes only (``positive_iou_thresh=1.0``), negatives the RoIs overlapping no box of the class by
0.3 IoU; the RoI matcher leaves RoIs whose best IoU is in [0.3, 0.5) out of the mini-batches, so
that every background RoI is such a negative. Positives weigh 2 (R-CNN's code). NMS at 0.3.

Deviations: the SVMs are trained by SGD on sampled mini-batches, not by liblinear with hard
negative mining over all cached windows (``rcnnzoo.modeling.roi_heads.train_linear_svms`` does
that on features you cache; ``LinearSVMOutputLayers.load_svms`` installs its result); negatives
overlapping another negative by more than 0.7 are not removed; the box regressor reads fc7 (the
paper: the pooled conv5 features).
"""

from rcnnzoo.config import LazyCall as L
from rcnnzoo.modeling import LinearSVMOutputLayers, Matcher

from ..common.schedules import step_schedule
from .sppnet_vgg16_voc import dataloader, model, optimizer, train

model.roi_heads.box_predictor = L(LinearSVMOutputLayers)(
    loss_type="hinge",
    positive_iou_thresh=1.0,
    negative_iou_thresh=0.3,
    positive_weight=2.0,
    smooth_l1_beta=1.0,
    test_score_thresh=0.05,
    test_nms_thresh=0.3,
)
model.roi_heads.proposal_matcher = L(Matcher)(thresholds=[0.3, 0.5], labels=[0, -1, 1])

model.roi_heads.box_head.dropout = 0.0  # fixed features: the SVMs see fc7 as it is at test time

train.init_checkpoint = "./output/voc_sppnet_vgg16/model_final.pth"
train.freeze = ["roi_heads.box_head"]
train.max_iter = 10000
lr_multiplier = step_schedule(train.max_iter, steps=(0.75,), warmup_iter=0)
train.output_dir = "./output/voc_sppnet_vgg16_svm"
