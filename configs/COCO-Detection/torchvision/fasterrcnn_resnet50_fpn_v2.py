"""torchvision's ``fasterrcnn_resnet50_fpn_v2`` as an rcnnzoo config: same weights, same detections.

The improved Faster R-CNN of torchvision (after Li et al. 2021, "Benchmarking Detection Transfer
Learning with Vision Transformers"). Load its COCO weights converted by
``tools/convert_checkpoint.py IN OUT --source torchvision --arch fasterrcnn_resnet50_fpn_v2``.

Everything of ``fasterrcnn_resnet50_fpn.py`` (input arithmetic, resizing, anchors and their
spacing, RPN and RoI settings, classes) holds here too; these options differ from it:

* BatchNorm (``nn.BatchNorm2d``, not FrozenBN) everywhere it is in torchvision's model: the
  ResNet-50 (``norm="BN"``), after every FPN conv (``backbone.norm="BN"``, the convs lose their
  bias) and after each box-head conv;
* nothing frozen (``freeze_at=0``): torchvision's v2 keeps plain BatchNorm even in the layers
  whose parameters it freezes when fine-tuning, and FrozenBN rounds differently from it (~1e-6),
  so for the same detections every BatchNorm stays ``nn.BatchNorm2d`` (in eval mode they hold
  their statistics; in training they update them, as torchvision's do);
* RPN head: two 3x3 convs (``conv_dims=[-1, -1]``) instead of one;
* box head: four 256-d 3x3 convs, each with BatchNorm and ReLU, then one 1024-d FC
  (``FastRCNNConvFCHead(conv_dims=[256] * 4, fc_dims=[1024], conv_norm="BN")``).
"""

from rcnnzoo.config import LazyCall as L
from rcnnzoo.model_zoo import get_config
from rcnnzoo.modeling import FastRCNNConvFCHead

# the v1 file lives in a folder whose name is no Python identifier: loaded, not imported
_base = get_config("COCO-Detection/torchvision/fasterrcnn_resnet50_fpn.py")
model, dataloader, optimizer, lr_multiplier, train = (
    _base.model,
    _base.dataloader,
    _base.optimizer,
    _base.lr_multiplier,
    _base.train,
)

model.backbone.bottom_up.norm = "BN"
model.backbone.bottom_up.freeze_at = 0
model.backbone.norm = "BN"
model.proposal_generator.head.conv_dims = [-1, -1]
model.roi_heads.box_head = L(FastRCNNConvFCHead)(
    conv_dims=[256, 256, 256, 256], fc_dims=[1024], conv_norm="BN"
)

train.output_dir = "./output/torchvision_fasterrcnn_resnet50_fpn_v2"
