"""SPPnet (He et al. 2014) on the shapes dataset, on the CPU: the CNN once per image, each
selective search window max-pooled into a 1x1 + 2x2 + 4x4 spatial pyramid, two FC layers, a
softmax with class-specific box regression.

Proposals precomputed as for ``fast_rcnn_tiny_shapes.py`` (same files), then::

    python tools/train_net.py --config-file Classic/sppnet_tiny_shapes.py

The same network, data and schedule as ``fast_rcnn_tiny_shapes.py`` but for the pooler:
SPPnet's :class:`~rcnnzoo.modeling.SPPPooler` (the paper's window-to-cell projection and
floor/ceil bins) instead of Fast R-CNN's RoIPool 7x7, with the 3-level pyramid 4x4, 2x2, 1x1 of
the paper's Figure 3 (21 bins per channel). Background windows overlap a ground-truth box by
[0.1, 0.5), positives by [0.5, 1], a quarter of each mini-batch positive, as in the paper's
fine-tuning; NMS at 0.3.

Deviations, for a CPU and for this data:

* no ImageNet pre-training, so the convolutions cannot stay frozen as in the paper: the whole
  TinyNet trains from scratch with the head (AdamW, LR 2e-3);
* the paper trains per-class SVMs on fc7 and the box regressor on the pooled conv5 features
  after fine-tuning; here the softmax and the box regressor on fc7 train jointly, as in Fast
  R-CNN (``Classic/sppnet_vgg16_svm_voc.py`` shows the SVM stage, and
  ``Classic/rcnn_tiny_shapes.py`` R-CNN's SVMs trained on cached features);
* the paper's detector pools 1x1, 2x2, 3x3 and 6x6 (50 bins); here the map is c3 (stride 8, as
  in ``fast_rcnn_tiny_shapes.py``), where half the shapes span fewer than 6 cells;
* single scale (the paper also pools each window from the best of five scales).
"""

from rcnnzoo.config import LazyCall as L
from rcnnzoo.modeling import SPPPooler

from .fast_rcnn_tiny_shapes import dataloader, lr_multiplier, model, optimizer, train

model.roi_heads.box_pooler = L(SPPPooler)(levels=(1, 2, 4))
train.output_dir = "./output/shapes_sppnet_tiny"
