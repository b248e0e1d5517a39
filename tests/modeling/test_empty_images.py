"""Images without objects train: a batch of only empty images gives finite losses with zero box
losses, and gradients that are finite, for Faster and Mask R-CNN and the SVM head."""

from __future__ import annotations

import math

import pytest
import torch

from rcnnzoo.config import LazyConfig, configs_root, instantiate
from rcnnzoo.structures import BitMasks, Boxes, Instances


def _empty_batch(with_masks: bool) -> list[dict]:
    g = torch.Generator().manual_seed(0)
    batch = []
    for h, w in [(224, 288), (256, 240)]:
        inst = Instances((h, w), gt_boxes=Boxes(torch.zeros(0, 4)), gt_classes=torch.zeros(0, dtype=torch.int64))
        if with_masks:
            inst.gt_masks = BitMasks(torch.zeros(0, h, w, dtype=torch.bool))
        image = torch.randint(0, 256, (3, h, w), generator=g, dtype=torch.uint8)
        batch.append({"image": image, "height": h, "width": w, "instances": inst})
    return batch


@pytest.mark.parametrize(
    "config", ["Shapes/faster_rcnn_tiny_fpn.py", "Shapes/mask_rcnn_tiny_fpn.py", "Shapes/faster_rcnn_svm_tiny_fpn.py"]
)
def test_a_batch_of_only_empty_images_gives_finite_losses(config):
    torch.manual_seed(0)
    cfg = LazyConfig.load(configs_root() / config)
    model = instantiate(cfg.model).train()
    losses = model(_empty_batch(with_masks="mask" in config))
    assert all(math.isfinite(v.item()) for v in losses.values()), losses
    # nothing to regress: the box losses are exactly zero, the classifiers learn "background"
    assert losses["loss_box_reg"].item() == 0.0 and losses["loss_rpn_loc"].item() == 0.0
    assert losses["loss_cls"].item() > 0 and losses["loss_rpn_cls"].item() > 0
    if "loss_mask" in losses:
        assert losses["loss_mask"].item() == 0.0
    sum(losses.values()).backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
