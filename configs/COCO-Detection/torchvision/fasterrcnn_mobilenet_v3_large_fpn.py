"""torchvision's ``fasterrcnn_mobilenet_v3_large_fpn`` as an rcnnzoo config: same weights, same detections.

Load its COCO weights converted by
``tools/convert_checkpoint.py IN OUT --source torchvision --arch fasterrcnn_mobilenet_v3_large_fpn``.

Everything of ``fasterrcnn_resnet50_fpn.py`` that is not about the backbone holds here too (input
arithmetic, resizing to 800 / 1333, rounded anchors spaced torchvision's way, RPN top-k and NMS,
RoIAlign settings, the 2-FC box head, classes); these options differ from it:

* backbone: MobileNetV3-Large, FrozenBN with eps 1e-5 (``bn_eps``: torchvision's detection
  builder passes its own norm layer, so not the classifier's 1e-3), ``features.0`` ..
  ``features.6`` frozen (``freeze_at=3``, torchvision's ``trainable_backbone_layers=3``);
* FPN on ``features.13`` (``s32_first``, 160 channels) and ``features.16`` (``s32``, 960): both
  at stride 32, so the outputs are named ``output_names=["p5_first", "p5", "p6"]`` (p6 the max
  pool of p5, stride 64);
* RPN on all three maps, 15 anchors per location on each: sizes 32 .. 512 times aspect ratios
  0.5, 1, 2 (the converter reorders the RPN head's outputs from torchvision's ratio-major order);
  proposals with objectness probability below 0.05 dropped before NMS (``score_thresh``,
  torchvision's ``rpn_score_thresh``);
* RoIs pooled from ``p5_first`` alone: torchvision's pooler reads its maps "0" and "1", both at
  scale 1/32, and its level mapping clamps every box to the first.
"""

from rcnnzoo.config import LazyCall as L
from rcnnzoo.model_zoo import get_config
from rcnnzoo.modeling import FPN, MobileNetV3

# the v1 file lives in a folder whose name is no Python identifier: loaded, not imported
_base = get_config("COCO-Detection/torchvision/fasterrcnn_resnet50_fpn.py")
model, dataloader, optimizer, lr_multiplier, train = (
    _base.model,
    _base.dataloader,
    _base.optimizer,
    _base.lr_multiplier,
    _base.train,
)

model.backbone = L(FPN)(
    bottom_up=L(MobileNetV3)(out_features=["s32_first", "s32"], norm="FrozenBN", freeze_at=3, bn_eps=1e-5),
    in_features=["s32_first", "s32"],
    out_channels=256,
    top_block="maxpool",
    output_names=["p5_first", "p5", "p6"],
)
model.proposal_generator.in_features = ["p5_first", "p5", "p6"]
model.proposal_generator.anchor_generator.sizes = [[32, 64, 128, 256, 512]]
model.proposal_generator.anchor_generator.aspect_ratios = [[0.5, 1.0, 2.0]]
model.proposal_generator.score_thresh = 0.05
model.roi_heads.in_features = ["p5_first"]

train.output_dir = "./output/torchvision_fasterrcnn_mobilenet_v3_large_fpn"
