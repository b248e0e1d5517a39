"""FPN: level names and strides from the bottom-up's output_shape, top-down wiring, padding."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from rcnnzoo.config import L, instantiate
from rcnnzoo.modeling.backbone import FPN, ResNet, TinyNet

RES = ["res2", "res3", "res4", "res5"]


def _tiny_fpn(**kwargs) -> FPN:
    bottom_up = TinyNet(widths=(8, 16, 24, 32))
    return FPN(bottom_up=bottom_up, **{"in_features": ["c2", "c3", "c4", "c5"], "out_channels": 16, **kwargs})


def test_resnet_fpn_levels_from_a_lazy_config():
    cfg = L(FPN)(bottom_up=L(ResNet)(depth=18), in_features=RES)
    fpn = instantiate(cfg)
    assert {n: (s.channels, s.stride) for n, s in fpn.output_shape().items()} == {
        "p2": (256, 4),
        "p3": (256, 8),
        "p4": (256, 16),
        "p5": (256, 32),
        "p6": (256, 64),
    }
    assert [c[0].in_channels for c in fpn.lateral_convs] == [64, 128, 256, 512]  # read from ResNet-18
    out = fpn(torch.randn(1, 3, 64, 128))
    assert {n: tuple(t.shape) for n, t in out.items()} == {
        "p2": (1, 256, 16, 32),
        "p3": (1, 256, 8, 16),
        "p4": (1, 256, 4, 8),
        "p5": (1, 256, 2, 4),
        "p6": (1, 256, 1, 2),
    }


def test_size_divisibility_makes_odd_inputs_exact():
    fpn = _tiny_fpn()
    assert fpn.size_divisibility == 32
    h, w = 45, 71
    d = fpn.size_divisibility
    ph, pw = math.ceil(h / d) * d, math.ceil(w / d) * d
    x = F.pad(torch.randn(1, 3, h, w), (0, pw - w, 0, ph - h))
    out = fpn(x)
    for name in ("p2", "p3", "p4", "p5"):  # the top-down levels tile the padded image exactly
        stride = fpn.output_shape()[name].stride
        assert out[name].shape[-2:] == (ph // stride, pw // stride), name
    # p6 subsamples p5 (3 columns here) and keeps its last column: ceil, as in detectron2.
    assert out["p6"].shape[-2:] == (math.ceil(ph / 64), math.ceil(pw / 64))
    # Unpadded odd sizes still run: nearest upsampling targets each lateral's own size.
    assert fpn(torch.randn(1, 3, h, w))["p2"].shape[-2:] == (12, 18)


@pytest.mark.parametrize("fuse", ["sum", "avg"])
def test_top_down_pathway(fuse):
    fpn = _tiny_fpn(in_features=["c4", "c5"], top_block=None, fuse=fuse).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        c = fpn.bottom_up(x)
        lat4, lat5 = fpn.lateral_convs[0](c["c4"]), fpn.lateral_convs[1](c["c5"])
        merged4 = lat4 + F.interpolate(lat5, scale_factor=2.0, mode="nearest")
        if fuse == "avg":
            merged4 = merged4 / 2
        out = fpn(x)
    assert list(out) == ["p4", "p5"]
    torch.testing.assert_close(out["p5"], fpn.output_convs[1](lat5))
    torch.testing.assert_close(out["p4"], fpn.output_convs[0](merged4))


def test_maxpool_top_block_subsamples_the_coarsest_level():
    out = _tiny_fpn().eval()(torch.randn(1, 3, 64, 64))
    assert torch.equal(out["p6"], out["p5"][:, :, ::2, ::2])


def test_p6p7_top_block_reads_c5():
    fpn = _tiny_fpn(in_features=["c3", "c4", "c5"], top_block="p6p7")
    assert list(fpn.output_shape()) == ["p3", "p4", "p5", "p6", "p7"]
    assert fpn.output_shape()["p7"].stride == 128
    assert fpn.top_block.p6.in_channels == 32  # C5's channels, as in RetinaNet
    out = fpn(torch.randn(1, 3, 128, 128))
    assert out["p6"].shape == (1, 16, 2, 2) and out["p7"].shape == (1, 16, 1, 1)


def test_init_and_norm():
    plain = _tiny_fpn()
    conv = plain.output_convs[0][0]
    bound = math.sqrt(3 / (conv.in_channels * 9))  # c2_xavier: U(-b, b), b = sqrt(3 / fan_in)
    assert conv.weight.abs().max() <= bound and conv.weight.abs().max() > 0.9 * bound
    assert torch.count_nonzero(conv.bias) == 0
    gn = _tiny_fpn(norm="GN")
    assert gn.lateral_convs[0][0].bias is None and isinstance(gn.lateral_convs[0][1], torch.nn.GroupNorm)


def test_channels_last_gives_the_same_features():
    fpn = _tiny_fpn().eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        ref = fpn(x)
        out = fpn.to(memory_format=torch.channels_last)(x.contiguous(memory_format=torch.channels_last))
    for name in ref:
        torch.testing.assert_close(out[name], ref[name], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(in_features=["c2", "c9"]), "must be a non-empty list of TinyNet outputs"),
        (dict(in_features=["c2", "c4"]), "strides doubling"),
        (dict(top_block="p6"), "Unknown FPN top_block"),
        (dict(fuse="max"), "Unknown FPN fuse"),
    ],
)
def test_bad_arguments_raise_with_a_message(kwargs, message):
    with pytest.raises(ValueError, match=message):
        _tiny_fpn(**kwargs)


def test_in_features_are_sorted_by_stride():
    fpn = _tiny_fpn(in_features=["c5", "c3", "c4"])
    assert fpn.in_features == ["c3", "c4", "c5"] and list(fpn.output_shape())[:3] == ["p3", "p4", "p5"]
