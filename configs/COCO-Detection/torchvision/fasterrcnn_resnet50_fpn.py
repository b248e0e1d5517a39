"""torchvision's ``fasterrcnn_resnet50_fpn`` (v1) as an rcnnzoo config: same weights, same detections.

Load torchvision's COCO weights converted by
``tools/convert_checkpoint.py IN OUT --source torchvision --arch fasterrcnn_resnet50_fpn``.
Every option below that differs from detectron2's recipe (``common/models/faster_rcnn_fpn.py``)
is one torchvision's model has:

* input: RGB, divided by 255 (``pixel_divisor``), then ImageNet mean/std on the 0-1 scale:
  torchvision's arithmetic to the bit (mean/std times 255 on 0-255 pixels differs by ~5e-7, which
  the network grows to ~1e-3 in boxes and scores); shortest edge 800, longest at most 1333
  (torchvision resizes inside the model, rcnnzoo in the data mapper);
* ResNet-50: stride in the 3x3 convs (torchvision's layout), FrozenBN, stem + res2 frozen;
* anchors rounded to integers (torchvision rounds its cell anchors) and spaced torchvision's way
  (``strides_from_grid``: p6 of an 800 x 1344 input has anchors 61 px apart vertically, not 64);
* RPN: 2000 boxes per level before NMS and 2000 per image after it in training, 1000 / 1000 at
  test time; boxes smaller than 1e-3 px dropped; smooth L1 with beta 1/9;
* RoIAlign with ``sampling_ratio=2`` and ``aligned=False``; box head fc 1024 x 2 (TwoMLPHead);
  smooth L1 with beta 1/9 for the box loss;
* at test time, boxes narrower or lower than 1e-2 px after clipping (``test_min_box_size``)
  dropped before NMS, so that slivers along the image border do not take places in the top 100.

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
model.proposal_generator.anchor_generator.strides_from_grid = True
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
model.roi_heads.box_predictor.test_min_box_size = 1e-2
# torchvision's image_mean / image_std (RGB, 0-1 scale), applied after dividing by 255
model.pixel_divisor = 255.0
model.pixel_mean = [0.485, 0.456, 0.406]
model.pixel_std = [0.229, 0.224, 0.225]
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
