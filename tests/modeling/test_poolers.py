from collections import OrderedDict

import pytest
import torch
from torchvision.ops import MultiScaleRoIAlign, roi_align, roi_pool

from rcnnzoo.modeling.poolers import RoIAlign, RoIPool, assign_boxes_to_levels
from rcnnzoo.structures import Boxes


def test_level_assignment_hand_computed():
    # sqrt(area) 224 -> level 4; 112 -> 3; 448 -> 5; 20 -> clamped to 2; 2000 -> clamped to 5
    sizes = torch.tensor([224.0, 112.0, 448.0, 20.0, 2000.0])
    boxes = torch.stack([torch.zeros(5), torch.zeros(5), sizes, sizes], 1)
    levels = assign_boxes_to_levels(boxes, 2, 5, 224, 4)
    assert levels.tolist() == [2, 1, 3, 0, 3]


def test_single_level_equals_torchvision_ops():
    torch.manual_seed(0)
    x = torch.randn(2, 4, 20, 30)
    boxes = [Boxes(torch.tensor([[10.0, 12.0, 90.0, 70.0]])), Boxes(torch.tensor([[0.0, 0.0, 40.0, 40.0], [5.5, 6.5, 60.25, 33.0]]))]
    rois = torch.tensor([[0, 10.0, 12.0, 90.0, 70.0], [1, 0.0, 0.0, 40.0, 40.0], [1, 5.5, 6.5, 60.25, 33.0]])
    align = RoIAlign(output_size=7, scales=[1 / 4], sampling_ratio=2, aligned=True)
    assert torch.equal(align([x], boxes), roi_align(x, rois, 7, 0.25, 2, True))
    pool = RoIPool(output_size=(7, 7), scales=[1 / 4])
    assert torch.equal(pool([x], boxes), roi_pool(x, rois, 7, 0.25))


def test_multilevel_matches_torchvision_multiscale_roialign():
    torch.manual_seed(0)
    image_size = (256, 256)
    feats = [torch.randn(2, 8, 256 // s, 256 // s) for s in (4, 8, 16, 32)]
    # sizes well inside one level each, so both level formulas agree
    b0 = torch.tensor([[10.0, 10.0, 40.0, 40.0], [20.0, 30.0, 120.0, 130.0], [0.0, 0.0, 250.0, 240.0]])
    b1 = torch.tensor([[50.0, 60.0, 110.0, 110.0], [5.0, 5.0, 200.0, 180.0]])
    ours = RoIAlign(output_size=7, scales=[1 / 4, 1 / 8, 1 / 16, 1 / 32], sampling_ratio=2, aligned=False)
    tv = MultiScaleRoIAlign(["0", "1", "2", "3"], 7, 2)
    expected = tv(OrderedDict((str(i), f) for i, f in enumerate(feats)), [b0, b1], [image_size, image_size])
    assert torch.allclose(ours(feats, [Boxes(b0), Boxes(b1)]), expected, atol=1e-6)


def test_bad_scales_and_level_count():
    with pytest.raises(ValueError, match="powers of 1/2"):
        RoIAlign(output_size=7, scales=[1 / 3])
    p = RoIAlign(output_size=7, scales=[1 / 4, 1 / 8])
    with pytest.raises(ValueError, match="2 levels"):
        p([torch.zeros(1, 1, 4, 4)], [Boxes(torch.zeros(0, 4))])
