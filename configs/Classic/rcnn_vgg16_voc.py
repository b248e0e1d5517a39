"""R-CNN VGG16 on PASCAL VOC 2007 (Girshick et al. 2014; with VGG16 as in its journal version and
the Fast R-CNN paper's baseline: 66.0 mAP with box regression), in the paper's stages.

Every selective search proposal (2000 per image, "fast" mode, precomputed as in
``fast_rcnn_vgg16_voc.py``) is dilated for 16 px of context, warped to 224 x 224 (VGG16's input; the
paper's 227 is AlexNet's) and run through VGG16: conv5_3, max-pooled to 7 x 7 (pool5), fc6 and fc7
(4096-d, dropout 0.5), then 20 one-vs-rest linear SVMs; class-specific box regressors read pool5.
Trains on VOC 2007 trainval, tests on VOC 2007 test (11-point AP). ImageNet VGG16 weights go in
``train.init_checkpoint`` with this model's key layout: torchvision's ``features.*`` as
``backbone.features.*`` and ``classifier.{0,3}.*`` (fc6, fc7) as ``box_head.classifier.{0,3}.*``.

The stages, from one command (``tools/train_net.py --config-file Classic/rcnn_vgg16_voc.py``):

1. ``1_finetune``: every layer fine-tuned on warped regions with a 21-way softmax (the predictor is
   ``FastRCNNOutputLayers`` for this stage, box loss off): SGD, LR 0.001, momentum 0.9, weight decay
   5e-4; 128 windows per batch, at most 32 positive (IoU >= 0.5 with a ground-truth box; the
   ground-truth boxes are among the windows), the rest background; random horizontal flips;
2. ``2_svms``: fc7 of every ground-truth box and proposal of the training set cached; per class a
   linear SVM (hinge loss, C = 0.001 on features scaled to a mean norm of 20, positives weighted
   2 as in R-CNN's code) on the ground-truth boxes against the proposals below 0.3 IoU with the
   class, with hard negative mining (negatives scoring above -1 added, below -1.2 evicted);
3. ``3_box_regressors``: ridge regression (lambda = 1000) from pool5 of the proposals overlapping a
   ground-truth box by IoU >= 0.6 to that box;

then the final model (SVM scores, pool5 box regression, per-class NMS at 0.3) is evaluated.

Deviations from the paper:

* the paper gives the fine-tuning LR (0.001) but no schedule: here x0.1 at 30k of 40k iterations
  (Fast R-CNN's); biases learn at the base LR;
* a batch's 128 windows come from its 4 images (32 each), not uniformly from the whole training set;
* crops are warped by bilinear sampling of the zero-extended normalized image
  (``torchvision.ops.roi_align``); R-CNN's code crops the part of the dilated box inside the
  image at integer pixels, resizes it and pastes it into a mean-filled crop, which differs by
  rounding and at the one interpolated pixel along the image border;
* SVMs are solved by L-BFGS with the bias unregularised (liblinear regularises a bias feature of
  10), mining over the whole in-memory cache at once rather than image by image; SVM scores are
  reported as sigmoids of the margins;
* box regression targets use Fast R-CNN's delta encoding with weights (10, 10, 5, 5), not
  whitened targets; the bias is not regularised;
* the SVM and box regressor caches hold the images as the test mapper reads them (no flip), in
  float16, with at most 200 random background proposals per image (best IoU with every object
  below 0.3; all of them in the paper, which kept its cache on disk) besides the ground-truth
  boxes and every proposal near an object; hard negatives are mined among those.
"""

from rcnnzoo.config import LazyCall as L
from rcnnzoo.data import RandomFlip
from rcnnzoo.engine.rcnn_stages import FitBoxRegressors, TrainSVMs
from rcnnzoo.modeling import (
    RCNN,
    VGG16,
    FastRCNNOutputLayers,
    LinearSVMOutputLayers,
    PrecomputedProposals,
    VGG16BoxHead,
)

from ..common.data.voc import dataloader
from ..common.optim import SGD as optimizer
from ..common.schedules import step_schedule
from ..common.train import train

model = L(RCNN)(
    backbone=L(VGG16)(out_features=["conv5"], freeze_at=0),
    proposal_generator=L(PrecomputedProposals)(topk=(2000, 2000)),
    box_head=L(VGG16BoxHead)(dropout=0.5),
    box_predictor=L(LinearSVMOutputLayers)(test_score_thresh=0.05, test_nms_thresh=0.3),
    num_classes=20,
    in_feature="conv5",
    input_size=224,
    context_padding=16,
    pooled_size=7,
    crop_batch_size=128,
    batch_size_per_image=32,
    positive_fraction=0.25,
    box_regression="pool5",
    # torchvision's ImageNet VGG16 weights take RGB in [0, 1] normalized by mean/std; in 0-255 units:
    pixel_mean=[123.675, 116.280, 103.530],
    pixel_std=[58.395, 57.120, 57.375],
    input_format="RGB",
)

dataloader.train.dataset.names = "voc_2007_trainval"
dataloader.train.dataset.proposal_files = ["./output/proposals/selective_search_voc_2007_trainval.npz"]
dataloader.test.dataset.proposal_files = ["./output/proposals/selective_search_voc_2007_test.npz"]
# every region is warped to 224 x 224: the images keep their size
dataloader.train.mapper.augmentations = [L(RandomFlip)(horizontal=True)]
dataloader.test.mapper.augmentations = []
dataloader.train.mapper.image_format = model.input_format
dataloader.test.mapper.image_format = model.input_format
dataloader.train.total_batch_size = 4

optimizer.lr = 0.001
optimizer.weight_decay = 5e-4
optimizer.params.weight_decay_bias = 0.0
train.max_iter = 40000
lr_multiplier = step_schedule(train.max_iter, steps=(30000 / 40000,), warmup_iter=0)
# fc7 of all 2000 proposals of the 5011 trainval images would take 160 GB: 200 background
# proposals per image (and every proposal near an object), stored as float16, take about 12 GB
_CACHE = dict(background_per_image=200, dtype="float16")
train.stages = [
    dict(
        name="1_finetune",
        share=1.0,
        replace={
            "model.box_predictor": L(FastRCNNOutputLayers)(
                loss_weight={"loss_box_reg": 0.0}, test_score_thresh=0.05, test_nms_thresh=0.3
            )
        },
    ),
    dict(name="2_svms", run=L(TrainSVMs)(C=0.001, positive_weight=2.0, hard_negative_rounds=3, cache=_CACHE)),
    dict(name="3_box_regressors", run=L(FitBoxRegressors)(features_from="2_svms", lam=1000.0, cache=_CACHE)),
]
train.checkpointer.period = 5000
train.eval_period = 0  # the final model (stage 3) is evaluated at the end
train.output_dir = "./output/voc_rcnn_vgg16"
