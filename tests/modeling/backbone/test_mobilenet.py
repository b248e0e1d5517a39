"""MobileNetV3: torchvision keys, its detection taps and freezing, FPN use."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn
from torchvision.models.detection import fasterrcnn_mobilenet_v3_large_fpn
from torchvision.models.detection.backbone_utils import _mobilenet_extractor

from rcnnzoo.layers import FrozenBatchNorm2d
from rcnnzoo.modeling.backbone import FPN, MobileNetV3

ALL = ("s2", "s4", "s8", "s16", "s32", "s32_first")


def test_keys_are_torchvision_features():
    tv_keys = {
        k
        for k in torchvision.models.mobilenet_v3_large(weights=None).state_dict()
        if k.startswith("features.") and "num_batches_tracked" not in k
    }
    ours = MobileNetV3(out_features=ALL)
    assert set(ours.state_dict()) == tv_keys


def test_strides_and_channels():
    model = MobileNetV3(out_features=ALL)
    assert {n: (s.channels, s.stride) for n, s in model.output_shape().items()} == {
        "s2": (16, 2),
        "s4": (24, 4),
        "s8": (40, 8),
        "s16": (112, 16),
        "s32_first": (160, 32),
        "s32": (960, 32),
    }
    assert len(MobileNetV3(out_features=("s16",)).features) == 13  # nothing after features.12


def test_matches_torchvision_fasterrcnn_mobilenet_v3_large_fpn_body():
    torch.manual_seed(0)
    body = fasterrcnn_mobilenet_v3_large_fpn(weights=None, weights_backbone=None).backbone.body.eval()
    assert dict(body.return_layers) == {"13": "0", "16": "1"}
    ours = MobileNetV3(out_features=("s32_first", "s32"), norm="BN", freeze_at=0).eval()
    ours.load_state_dict({f"features.{k}": v for k, v in body.state_dict().items()})
    x = torch.randn(1, 3, 96, 64)
    with torch.no_grad():
        theirs, out = body(x), ours(x)
    assert (out["s32_first"].shape[1], out["s32"].shape[1]) == (theirs["0"].shape[1], theirs["1"].shape[1])
    torch.testing.assert_close(out["s32_first"], theirs["0"])
    torch.testing.assert_close(out["s32"], theirs["1"])


def _blocks(named_parameters, frozen: bool) -> set[int]:
    """Indices ``i`` of ``features[i]`` owning a parameter with ``requires_grad == not frozen``."""
    return {int(n.split(".")[1]) for n, p in named_parameters if p.requires_grad != frozen}


@pytest.mark.parametrize("trainable_layers", range(7))
def test_freeze_at_is_six_minus_torchvision_trainable_layers(trainable_layers):
    tv = _mobilenet_extractor(torchvision.models.mobilenet_v3_large(weights=None), True, trainable_layers)
    tv_body = [(n, p) for n, p in tv.named_parameters() if n.startswith("body.")]
    ours = MobileNetV3(out_features=("s16", "s32"), norm="BN", freeze_at=6 - trainable_layers)
    frozen = _blocks(ours.named_parameters(), frozen=True)
    assert frozen == _blocks(tv_body, frozen=True)
    assert frozen.isdisjoint(_blocks(ours.named_parameters(), frozen=False))  # whole blocks freeze
    # ours also fixes their BatchNorm statistics (torchvision leaves them updating)
    frozen_bns = [m for i in frozen for m in ours.features[i].modules() if isinstance(m, FrozenBatchNorm2d)]
    assert all(not isinstance(m, nn.BatchNorm2d) for i in frozen for m in ours.features[i].modules())
    assert len(frozen_bns) >= len(frozen)


def test_under_fpn():
    fpn = FPN(bottom_up=MobileNetV3(), in_features=["s16", "s32"], out_channels=32)
    out = fpn(torch.randn(1, 3, 64, 64))
    assert {n: tuple(t.shape) for n, t in out.items()} == {
        "p4": (1, 32, 4, 4),
        "p5": (1, 32, 2, 2),
        "p6": (1, 32, 1, 1),
    }
    with pytest.raises(ValueError, match="strides doubling"):
        FPN(bottom_up=MobileNetV3(out_features=ALL), in_features=["s32_first", "s32"])


def test_bad_output_name():
    with pytest.raises(ValueError, match="out_features must be a non-empty subset"):
        MobileNetV3(out_features=("c5",))
