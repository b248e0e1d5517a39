"""torchvision's ``maskrcnn_resnet50_fpn_v2`` as an rcnnzoo config: same weights, same detections.

torchvision's Faster R-CNN v2 options (see ``COCO-Detection/torchvision/fasterrcnn_resnet50_fpn_v2.py``:
BatchNorm everywhere and nothing frozen, two RPN convs, a 4-conv + 1-FC box head with BatchNorm)
plus its mask branch: RoIAlign 14x14 with ``sampling_ratio=2``, ``aligned=False`` on p2-p5, four
256-d 3x3 convs each followed by BatchNorm (``conv_norm="BN"``, the convs have no bias) and ReLU,
a 2x2 deconv and a per-class 1x1 predictor (28x28 masks).
Convert the weights with ``tools/convert_checkpoint.py IN OUT --source torchvision --arch maskrcnn_resnet50_fpn_v2``.

As for v1 (``maskrcnn_resnet50_fpn.py``), the 28x28 mask probabilities are torchvision's, while
the masks pasted into the image are rcnnzoo's (binarized at 0.5) and may differ along their edges.
"""

from rcnnzoo.config import LazyCall as L
from rcnnzoo.model_zoo import get_config
from rcnnzoo.modeling import MaskRCNNConvUpsampleHead, RoIAlign

# the Faster R-CNN file lives in a folder whose name is no Python identifier: loaded, not imported
_base = get_config("COCO-Detection/torchvision/fasterrcnn_resnet50_fpn_v2.py")
model, dataloader, optimizer, lr_multiplier, train = (
    _base.model,
    _base.dataloader,
    _base.optimizer,
    _base.lr_multiplier,
    _base.train,
)

model.roi_heads.mask_in_features = ["p2", "p3", "p4", "p5"]
model.roi_heads.mask_pooler = L(RoIAlign)(output_size=14, sampling_ratio=2, aligned=False)
model.roi_heads.mask_head = L(MaskRCNNConvUpsampleHead)(
    conv_dims=[256, 256, 256, 256], deconv_dim=256, conv_norm="BN"
)

dataloader.train.mapper.use_instance_mask = True
dataloader.evaluator.tasks = ("bbox", "segm")

train.output_dir = "./output/torchvision_maskrcnn_resnet50_fpn_v2"
