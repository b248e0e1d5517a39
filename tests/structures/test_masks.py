"""BitMasks and PolygonMasks: indexing through Instances, boxes from masks, and the mask targets
(crop-and-resize) checked by hand and against a slow RoIAlign written out per sample point."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from rcnnzoo.structures import BitMasks, Instances, PolygonMasks


def rect_masks() -> BitMasks:
    t = torch.zeros(3, 10, 12, dtype=torch.bool)
    t[0, 2:6, 4:8] = True  # rows 2..5, cols 4..7
    t[1, 0:10, 11] = True  # the last column
    return BitMasks(t)  # mask 2 is empty


def test_bitmasks_index_len_cat_and_instances():
    m = rect_masks()
    assert len(m) == 3 and m.image_size == (10, 12)
    assert m[0].tensor.shape == (1, 10, 12) and torch.equal(m[-1].tensor, m.tensor[2:])
    assert torch.equal(m[torch.tensor([2, 0])].tensor, m.tensor[[2, 0]])
    assert torch.equal(m[torch.tensor([True, False, True])].tensor, m.tensor[[0, 2]])
    inst = Instances((10, 12), gt_masks=m, gt_classes=torch.tensor([0, 1, 2]))
    sub = inst[inst.gt_classes != 1]
    assert isinstance(sub.gt_masks, BitMasks) and torch.equal(sub.gt_masks.tensor, m.tensor[[0, 2]])
    both = Instances.cat([inst, sub])
    assert isinstance(both.gt_masks, BitMasks) and len(both.gt_masks) == 5
    assert torch.equal(both.gt_masks.tensor[3:], m.tensor[[0, 2]])
    assert isinstance(inst.to("cpu").gt_masks, BitMasks)
    with pytest.raises(ValueError, match="Tensor\\[N, H, W\\]"):
        BitMasks(torch.zeros(10, 12))


def test_bitmasks_boxes_nonempty_area_flip():
    m = rect_masks()
    assert m.get_bounding_boxes().tensor.tolist() == [[4, 2, 8, 6], [11, 0, 12, 10], [0, 0, 0, 0]]
    assert m.nonempty().tolist() == [True, True, False]
    assert m.area().tolist() == [16, 10, 0]
    flipped = m.flip()
    # x -> W - x for box edges: [4, 8) -> [4, 8) mirrored in width 12 = [12 - 8, 12 - 4)
    assert flipped.get_bounding_boxes().tensor.tolist() == [[4, 2, 8, 6], [0, 0, 1, 10], [0, 0, 0, 0]]
    assert torch.equal(m.flip(horizontal=False).tensor, m.tensor.flip(1))


def test_crop_and_resize_hand_computed():
    m = rect_masks()
    # the box is exactly the rectangle: every target pixel is foreground
    out = m[0].crop_and_resize(torch.tensor([[4.0, 2.0, 8.0, 6.0]]), 4)
    assert out.dtype == torch.float32 and out.shape == (1, 4, 4) and bool((out == 1).all())
    # box (0, 0, 8, 8) at M = 4: each target cell is a 2x2 block of pixels; the rectangle
    # (rows 2..5, cols 4..7) fills cells rows 1..2, cols 2..3
    out = m[0].crop_and_resize(torch.tensor([[0.0, 0.0, 8.0, 8.0]]), 4)
    expected = torch.zeros(4, 4)
    expected[1:3, 2:4] = 1
    assert torch.equal(out[0], expected)
    # indices: both boxes crop mask 0, R != N is fine
    out = m.crop_and_resize(torch.tensor([[4.0, 2.0, 8.0, 6.0], [0.0, 0.0, 8.0, 8.0]]), 4, indices=torch.tensor([0, 0]))
    assert bool((out[0] == 1).all()) and torch.equal(out[1], expected)
    with pytest.raises(ValueError, match="2 boxes for 3 masks"):
        m.crop_and_resize(torch.zeros(2, 4), 4)
    assert m.crop_and_resize(torch.zeros(0, 4), 5, indices=torch.zeros(0, dtype=torch.int64)).shape == (0, 5, 5)


def _bilinear(img: np.ndarray, y: float, x: float) -> float:
    """torchvision's roi_align bilinear rule (zero beyond one pixel outside, clamped at the edges)."""
    h, w = img.shape
    if y < -1.0 or y > h or x < -1.0 or x > w:
        return 0.0
    y, x = max(y, 0.0), max(x, 0.0)
    y0, x0 = int(y), int(x)
    if y0 >= h - 1:
        y0 = y1 = h - 1
        y = float(y0)
    else:
        y1 = y0 + 1
    if x0 >= w - 1:
        x0 = x1 = w - 1
        x = float(x0)
    else:
        x1 = x0 + 1
    ly, lx = y - y0, x - x0
    return (
        (1 - ly) * (1 - lx) * img[y0, x0]
        + (1 - ly) * lx * img[y0, x1]
        + ly * (1 - lx) * img[y1, x0]
        + ly * lx * img[y1, x1]
    )


def slow_crop(mask: np.ndarray, box: list[float], m: int) -> np.ndarray:
    """Aligned RoIAlign of one mask, sample point by sample point (adaptive sampling ratio)."""
    x0, y0, x1, y1 = (v - 0.5 for v in box)  # aligned: pixel centres at half-integers
    bin_w, bin_h = (x1 - x0) / m, (y1 - y0) / m
    gw, gh = math.ceil((x1 - x0) / m), math.ceil((y1 - y0) / m)
    out = np.zeros((m, m))
    for i in range(m):
        for j in range(m):
            acc = 0.0
            for iy in range(gh):
                for ix in range(gw):
                    acc += _bilinear(mask, y0 + i * bin_h + (iy + 0.5) * bin_h / gh, x0 + j * bin_w + (ix + 0.5) * bin_w / gw)
            out[i, j] = acc / (gh * gw)
    return out


def test_crop_and_resize_matches_slow_reference():
    rng = np.random.default_rng(0)
    masks = rng.uniform(size=(2, 17, 23)) > 0.5
    m = BitMasks(torch.from_numpy(masks))
    boxes = [
        [2.0, 3.0, 20.0, 15.0],
        [0.3, 0.7, 5.6, 16.2],
        [-4.0, -2.5, 9.0, 6.0],  # crosses the top-left border
        [15.25, 9.5, 27.0, 21.0],  # crosses the bottom-right border
        [6.0, 6.0, 7.0, 6.5],  # smaller than a target pixel
    ]
    indices = [0, 1, 0, 1, 1]
    got = m.crop_and_resize(torch.tensor(boxes), 7, indices=torch.tensor(indices)).numpy()
    for k, (box, idx) in enumerate(zip(boxes, indices)):
        ref = slow_crop(masks[idx].astype(np.float64), box, 7)
        clear = np.abs(ref - 0.5) > 1e-4  # ties at exactly 0.5 may go either way in float32
        assert clear.mean() > 0.8
        np.testing.assert_array_equal(got[k][clear], (ref >= 0.5)[clear], err_msg=f"box {k}")


def square(x0, y0, x1, y1):
    return [x0, y0, x1, y0, x1, y1, x0, y1]


def test_polygon_masks_crop_index_boxes():
    p = PolygonMasks([[square(4, 2, 8, 6)], [square(0, 0, 4, 8), [9, 1, 11, 1, 10, 3]], []])
    assert len(p) == 3
    assert p.get_bounding_boxes().tensor.tolist() == [[4, 2, 8, 6], [0, 0, 11, 8], [0, 0, 0, 0]]
    assert p.nonempty().tolist() == [True, True, False]
    assert len(p[1].polygons[0]) == 2 and len(p[torch.tensor([True, False, True])]) == 2
    assert [len(x) for x in p[torch.tensor([2, 1])].polygons] == [0, 2]

    # the polygon is the box: all ones; its left half: the left columns
    out = p.crop_and_resize(torch.tensor([[4.0, 2.0, 8.0, 6.0], [0.0, 0.0, 8.0, 8.0]]), 8, torch.tensor([0, 1]))
    assert bool((out[0] == 1).all())
    expected = torch.zeros(8, 8)
    expected[:, :4] = 1
    assert torch.equal(out[1], expected)

    inst = Instances((12, 12), gt_masks=p, gt_classes=torch.arange(3))
    both = Instances.cat([inst[:1], inst[1:]])
    assert isinstance(both.gt_masks, PolygonMasks) and len(both.gt_masks) == 3
    bits = p.to_bitmasks(12, 12)
    assert bits.area().tolist()[0] == 16 and bits.nonempty().tolist() == [True, True, False]


def test_polygon_and_bitmask_targets_agree():
    # a triangle: rasterizing inside the box and cropping the full-image raster differ only on edges
    poly = [[10.0, 5.0, 60.0, 20.0, 20.0, 55.0]]
    bits = PolygonMasks([poly]).to_bitmasks(64, 64)
    box = torch.tensor([[8.0, 4.0, 62.0, 57.0]])
    a = PolygonMasks([poly]).crop_and_resize(box, 28)
    b = bits.crop_and_resize(box, 28)
    assert (a == b).float().mean() > 0.95
