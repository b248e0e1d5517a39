import math

import torch

from rcnnzoo.modeling.anchor_generator import DefaultAnchorGenerator, make_cell_anchors


def test_cell_anchors_hand_computed():
    a = make_cell_anchors([32], [0.5, 1.0, 2.0])
    s = math.sqrt(2.0)
    expected = torch.tensor(
        [
            [-16 * s, -8 * s, 16 * s, 8 * s],  # h/w = 0.5: wide
            [-16, -16, 16, 16],
            [-8 * s, -16 * s, 8 * s, 16 * s],  # h/w = 2: tall
        ]
    )
    assert torch.allclose(a, expected, atol=1e-5)
    areas = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    assert torch.allclose(areas, torch.full((3,), 32.0**2))


def test_grid_layout_is_location_major():
    gen = DefaultAnchorGenerator(sizes=[[8, 16]], aspect_ratios=[[1.0]], strides=[4])
    feat = torch.zeros(1, 1, 2, 3)  # H=2, W=3
    (anchors,) = gen([feat])
    assert anchors.shape == (2 * 3 * 2, 4)
    # location (y=0, x=1) is the 2nd location; its two anchors are rows 2 and 3
    assert torch.allclose(anchors[2], torch.tensor([4 - 4.0, -4.0, 4 + 4.0, 4.0]))
    assert torch.allclose(anchors[3], torch.tensor([4 - 8.0, -8.0, 4 + 8.0, 8.0]))
    # last location (y=1, x=2), size 16
    assert torch.allclose(anchors[-1], torch.tensor([8 - 8.0, 4 - 8.0, 8 + 8.0, 4 + 8.0]))


def test_offset_and_levels_and_cache():
    gen = DefaultAnchorGenerator(sizes=[[32], [64]], aspect_ratios=[[1.0]], strides=[8, 16], offset=0.5)
    feats = [torch.zeros(2, 1, 4, 4), torch.zeros(2, 1, 2, 2)]
    a0, a1 = gen(feats)
    assert torch.allclose(a0[0], torch.tensor([4 - 16.0, 4 - 16.0, 4 + 16.0, 4 + 16.0]))
    assert torch.allclose(a1[0], torch.tensor([8 - 32.0, 8 - 32.0, 8 + 32.0, 8 + 32.0]))
    assert gen(feats)[0] is a0
    assert gen.num_anchors == [1, 1]


def test_matches_torchvision_with_rounding():
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.image_list import ImageList as TvImageList

    ours = DefaultAnchorGenerator(sizes=[[32]], aspect_ratios=[[1.0]], strides=[8], round_cell_anchors=True)
    tv = AnchorGenerator(sizes=((32,),), aspect_ratios=((1.0,),))
    feat = torch.zeros(1, 4, 5, 6)
    images = TvImageList(torch.zeros(1, 3, 40, 48), [(40, 48)])
    assert torch.equal(ours([feat])[0], tv(images, [feat])[0])
