import math

import pytest
import torch
from torchvision.models.detection._utils import BoxCoder

from rcnnzoo.modeling.box_regression import Box2BoxTransform


def test_hand_computed_deltas():
    t = Box2BoxTransform((1.0, 1.0, 1.0, 1.0))
    src = torch.tensor([[0.0, 0.0, 10.0, 20.0]])  # center (5, 10), w 10, h 20
    tgt = torch.tensor([[5.0, 0.0, 25.0, 20.0]])  # center (15, 10), w 20, h 20
    d = t.get_deltas(src, tgt)
    assert torch.allclose(d, torch.tensor([[1.0, 0.0, math.log(2.0), 0.0]]))


@pytest.mark.parametrize("weights", [(1.0, 1.0, 1.0, 1.0), (10.0, 10.0, 5.0, 5.0)])
def test_round_trip_and_torchvision_parity(weights):
    g = torch.Generator().manual_seed(0)
    xy = torch.rand(50, 2, generator=g) * 100
    src = torch.cat([xy, xy + 1 + torch.rand(50, 2, generator=g) * 50], 1)
    xy2 = torch.rand(50, 2, generator=g) * 100
    tgt = torch.cat([xy2, xy2 + 1 + torch.rand(50, 2, generator=g) * 50], 1)
    t = Box2BoxTransform(weights)
    deltas = t.get_deltas(src, tgt)
    assert torch.allclose(t.apply_deltas(deltas, src), tgt, atol=1e-3)
    tv = BoxCoder(weights)
    assert torch.allclose(deltas, tv.encode_single(tgt, src), atol=1e-5)
    assert torch.allclose(t.apply_deltas(deltas, src), tv.decode_single(deltas, src), atol=1e-4)


def test_class_specific_deltas_and_clamp():
    t = Box2BoxTransform((1.0, 1.0, 1.0, 1.0))
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
    deltas = torch.tensor([[0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 100.0, 100.0]])  # two classes
    out = t.apply_deltas(deltas, boxes)
    assert out.shape == (1, 8)
    assert torch.allclose(out[0, :4], boxes[0])
    assert torch.isfinite(out).all()  # exp(100) would overflow without the clamp


def test_apply_deltas_on_zero_boxes_keeps_the_class_dimension():
    t = Box2BoxTransform((10.0, 10.0, 5.0, 5.0))
    out = t.apply_deltas(torch.zeros(0, 12), torch.zeros(0, 4))
    assert out.shape == (0, 12)
