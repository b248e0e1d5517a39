"""torchvision's ``fasterrcnn_resnet50_fpn`` (v1) as an rcnnzoo config: same weights, same detections.

Load torchvision's COCO weights converted by
``tools/convert_checkpoint.py IN OUT --source torchvision --arch fasterrcnn_resnet50_fpn``.
Every option below that differs from detectron2's recipe (``common/models/faster_rcnn_fpn.py``)
is one torchvision's model has:

* input: RGB, ImageNet mean/std (torchvision's 0-1 values times 255); shortest edge 800,
  longest at most 1333 (torchvision resizes inside the model, rcnnzoo in the data mapper);
* ResNet-50: stride in the 3x3 convs (torchvision's layout), FrozenBN, stem + res2 frozen;
* anchors rounded to integers (torchvision rounds its cell anchors);
* RPN: 2000 boxes per level before NMS and 2000 per image after it in training, 1000 / 1000 at
  test time; boxes smaller than 1e-3 px dropped; smooth L1 with beta 1/9;
* RoIAlign with ``sampling_ratio=2`` and ``aligned=False``; box head fc 1024 x 2 (TwoMLPHead);
  smooth L1 with beta 1/9 for the box loss.

Classes: torchvision's COCO models have 91 outputs, background at 0 and label ``l`` = COCO
category id ``l`` (ten ids unused, "N/A"). Here ``num_classes = 90``: rcnnzoo class ``i`` is COCO
category id ``i + 1`` (the converter moves the background to the end); the ten unused ids keep
their outputs so that scores equal torchvision's. The COCO data loader's contiguous 80-class ids
differ from these, so COCO evaluation of this model needs that mapping (not wired up yet).
"""

from rcnnzoo.config import LazyCall as L
from rcnnzoo.data import RandomFlip, ResizeShortestEdge

from ...common.data.coco import dataloader
from ...common.models.faster_rcnn_fpn import model
from ...common.optim import SGD as optimizer
from ...common.schedules import lr_multiplier_1x as lr_multiplier
from ...common.train import train

model.backbone.bottom_up.stride_in_1x1 = False
model.proposal_generator.anchor_generator.round_cell_anchors = True
model.proposal_generator.pre_nms_topk = (2000, 1000)
model.proposal_generator.post_nms_topk = (2000, 1000)
model.proposal_generator.nms_thresh = 0.7
model.proposal_generator.min_box_size = 1e-3
model.proposal_generator.smooth_l1_beta = 1.0 / 9
model.roi_heads.num_classes = 90
model.roi_heads.box_pooler.sampling_ratio = 2
model.roi_heads.box_pooler.aligned = False
model.roi_heads.box_predictor.smooth_l1_beta = 1.0 / 9
model.roi_heads.box_predictor.test_score_thresh = 0.05
model.roi_heads.box_predictor.test_nms_thresh = 0.5
model.roi_heads.box_predictor.test_topk_per_image = 100
# torchvision's image_mean / image_std (RGB, 0-1 scale) times 255
model.pixel_mean = [123.675, 116.28, 103.53]
model.pixel_std = [58.395, 57.12, 57.375]
model.input_format = "RGB"

# torchvision's reference recipe trains at the test size, with horizontal flips
dataloader.train.mapper.augmentations = [
    L(ResizeShortestEdge)(short_edge_length=800, max_size=1333),
    L(RandomFlip)(horizontal=True),
]
dataloader.test.mapper.augmentations = [L(ResizeShortestEdge)(short_edge_length=800, max_size=1333)]
dataloader.train.mapper.image_format = model.input_format
dataloader.test.mapper.image_format = model.input_format

train.max_iter = 90000
train.output_dir = "./output/torchvision_fasterrcnn_resnet50_fpn"
