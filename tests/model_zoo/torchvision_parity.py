"""Shared helpers for the torchvision parity tests: random-weight models and identical inputs."""

from __future__ import annotations

import torch
import torchvision
from torch import nn

from rcnnzoo.config import instantiate
from rcnnzoo.layers import FrozenBatchNorm2d
from rcnnzoo.model_zoo import get_config
from rcnnzoo.model_zoo.converters import TORCHVISION_ARCHS, convert_torchvision_state_dict

MIN_SIZE, MAX_SIZE = 320, 512
SCORE_THRESH = 0.02


def build_torchvision(arch: str, seed: int = 0) -> nn.Module:
    """torchvision's ``arch`` with random weights made to behave like trained ones.

    Built without weights, the backbone has plain BatchNorm at its initial statistics (identity)
    and activations grow block after block; the BN layers get random affine parameters and their
    running statistics are then measured on random images, so every layer's output is in a
    reasonable range; then BN is frozen, as in torchvision's published COCO models. With these, torchvision's default classifier init gives
    top scores spread over 0.1 .. 0.8.
    """
    torch.manual_seed(seed)
    model = getattr(torchvision.models.detection, arch)(
        weights=None,
        weights_backbone=None,
        num_classes=91,
        min_size=MIN_SIZE,
        max_size=MAX_SIZE,
        box_score_thresh=SCORE_THRESH,
    )
    bns = [m for m in model.backbone.body.modules() if isinstance(m, nn.BatchNorm2d)]
    with torch.no_grad():
        for bn in bns:
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.normal_(0.0, 0.1)
            bn.reset_running_stats()
            bn.momentum = None  # cumulative average: the statistics of the calibration batch
        model.backbone.body.train()
        model.backbone.body(torch.randn(2, 3, 160, 224))
    # the published COCO models use FrozenBN, as the rcnnzoo config does
    model.backbone.body = FrozenBatchNorm2d.convert_frozen_batchnorm(model.backbone.body)
    return model.eval()


def build_converted(arch: str, tv_model: nn.Module) -> nn.Module:
    """The rcnnzoo model of ``arch``'s config with ``tv_model``'s converted weights."""
    cfg = get_config(TORCHVISION_ARCHS[arch])
    cfg.model.roi_heads.box_predictor.test_score_thresh = SCORE_THRESH
    model = instantiate(cfg.model)
    converted = convert_torchvision_state_dict(tv_model.state_dict(), arch)
    missing, unexpected = model.load_state_dict(converted, strict=False)
    assert not unexpected, unexpected
    # only non-persistent buffers may be missing (none are, today)
    assert not missing, missing
    return model.eval()


def random_images(seed: int = 1) -> list[torch.Tensor]:
    """Two uint8 RGB images, Tensor[3, H, W], that torchvision's resize leaves at their size."""
    gen = torch.Generator().manual_seed(seed)
    return [
        torch.randint(0, 256, (3, 320, 480), dtype=torch.uint8, generator=gen),
        torch.randint(0, 256, (3, 320, 416), dtype=torch.uint8, generator=gen),
    ]
