"""paste_masks_in_image: hand-computed cases, a slow per-pixel reference, boxes across the border,
and detector_postprocess pasting a model's per-RoI masks at the output size."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rcnnzoo.layers import mask_ops, paste_masks_in_image
from rcnnzoo.modeling.meta_arch import detector_postprocess
from rcnnzoo.structures import Boxes, Instances

PATHS = [True, False]  # windowed (the CPU default) and whole-image (the GPU default)


@pytest.mark.parametrize("windowed", PATHS)
def test_hand_computed(windowed):
    ones = torch.ones(1, 2, 2)
    out = paste_masks_in_image(ones, torch.tensor([[1.0, 1.0, 3.0, 3.0]]), (4, 4), windowed=windowed)
    expected = torch.zeros(4, 4, dtype=torch.bool)
    expected[1:3, 1:3] = True  # the pixels whose centres lie in the box
    assert out.dtype == torch.bool and out.shape == (1, 4, 4) and torch.equal(out[0], expected)

    # M = 2 into a 4x4 box: pixel (0, 0) samples mask coords (-0.25, -0.25), i.e. 0.75 * 0.75 of
    # mask pixel (0, 0); pixel 1 samples (0.25, .): still 0.75 of it; pixel 2 only 0.25.
    corner = torch.tensor([[[1.0, 0.0], [0.0, 0.0]]])
    out = paste_masks_in_image(corner, torch.tensor([[0.0, 0.0, 4.0, 4.0]]), (4, 4), windowed=windowed)
    expected = torch.zeros(4, 4, dtype=torch.bool)
    expected[:2, :2] = True
    assert torch.equal(out[0], expected)
    # the same at threshold 0.6: 0.5625 no longer passes, nothing is left
    out = paste_masks_in_image(corner, torch.tensor([[0.0, 0.0, 4.0, 4.0]]), (4, 4), threshold=0.6, windowed=windowed)
    assert not out.any()


@pytest.mark.parametrize("windowed", PATHS)
def test_boxes_across_the_border(windowed):
    ones = torch.ones(3, 4, 4)
    boxes = torch.tensor(
        [
            [-4.0, -4.0, 4.0, 4.0],  # top-left corner outside
            [6.0, 2.0, 14.0, 6.0],  # right part outside
            [12.0, 12.0, 20.0, 20.0],  # entirely outside
        ]
    )
    out = paste_masks_in_image(ones, boxes, (10, 10), windowed=windowed)
    expected = torch.zeros(3, 10, 10, dtype=torch.bool)
    expected[0, :4, :4] = True
    expected[1, 2:6, 6:] = True
    assert torch.equal(out, expected)


def slow_paste(mask: np.ndarray, box: list[float], height: int, width: int) -> np.ndarray:
    """Per image pixel: bilinear sample of the mask at the pixel centre, zeros outside the mask."""
    m = mask.shape[0]
    x0, y0, x1, y1 = box
    out = np.zeros((height, width))
    for y in range(height):
        for x in range(width):
            # mask coordinates whose integer points are the mask pixels' centres
            u = (x + 0.5 - x0) / (x1 - x0) * m - 0.5
            v = (y + 0.5 - y0) / (y1 - y0) * m - 0.5
            iu, iv = int(np.floor(u)), int(np.floor(v))
            value = 0.0
            for dv in (0, 1):
                for du in (0, 1):
                    r, c = iv + dv, iu + du
                    if 0 <= r < m and 0 <= c < m:
                        value += (1 - abs(v - r)) * (1 - abs(u - c)) * mask[r, c]
            out[y, x] = value
    return out


@pytest.mark.parametrize("windowed", PATHS)
def test_matches_slow_reference(windowed):
    rng = np.random.default_rng(0)
    height, width, m = 23, 31, 6
    boxes = [
        [3.0, 2.0, 20.0, 15.0],
        [10.3, 4.7, 13.9, 21.2],  # fractional, tall
        [-5.5, 12.0, 7.25, 30.0],  # crosses the left and bottom borders
        [25.0, -3.0, 40.0, 9.0],  # crosses the right and top borders
        [0.0, 0.0, 31.0, 23.0],  # the whole image
        [14.0, 8.0, 14.8, 8.6],  # smaller than a pixel
    ]
    masks = rng.uniform(size=(len(boxes), m, m))
    got = paste_masks_in_image(torch.tensor(masks, dtype=torch.float32), torch.tensor(boxes), (height, width), windowed=windowed)
    for k, box in enumerate(boxes):
        ref = slow_paste(masks[k], box, height, width)
        clear = np.abs(ref - 0.5) > 1e-4  # no float-rounding ties at the threshold
        np.testing.assert_array_equal(got[k].numpy()[clear], (ref >= 0.5)[clear], err_msg=f"box {k}")
        assert got[k].numpy().sum() == pytest.approx((ref >= 0.5).sum(), abs=1)
    assert got[:5].any(dim=(1, 2)).all()  # a meaningful check: the masks are not empty


def test_chunks_give_the_same_result(monkeypatch):
    rng = np.random.default_rng(1)
    masks = torch.tensor(rng.uniform(size=(7, 5, 5)), dtype=torch.float32)
    xy = torch.tensor(rng.uniform(-5, 35, size=(7, 2)), dtype=torch.float32)
    boxes = torch.cat([xy, xy + torch.tensor(rng.uniform(2, 20, size=(7, 2)), dtype=torch.float32)], dim=1)
    full = paste_masks_in_image(masks, Boxes(boxes), (30, 40))
    monkeypatch.setattr(mask_ops, "_MAX_PIXELS_PER_CHUNK", 300)  # about one detection per chunk
    assert torch.equal(paste_masks_in_image(masks, Boxes(boxes), (30, 40)), full)
    assert torch.equal(paste_masks_in_image(masks, boxes, (30, 40), windowed=False), full)
    assert paste_masks_in_image(masks[:0], boxes[:0], (30, 40)).shape == (0, 30, 40)
    with pytest.raises(ValueError, match="Tensor\\[N, M, M\\]"):
        paste_masks_in_image(masks[:, None], boxes, (30, 40))


def test_detector_postprocess_pastes_masks_at_the_output_size():
    # M = 20 = the boxes' widths at the output size: output pixel centres fall on mask pixel
    # centres along x (and between two equal rows along y), so no bilinear rounding at the edges
    probs = torch.zeros(2, 1, 20, 20)
    probs[0] = 1.0  # a full box
    probs[1, 0, :, :10] = 1.0  # the left half of its box
    det = Instances(
        (20, 30),
        pred_boxes=Boxes(torch.tensor([[2.0, 2.0, 12.0, 7.0], [10.0, 10.0, 20.0, 20.0]])),
        scores=torch.tensor([0.9, 0.8]),
        pred_classes=torch.tensor([0, 1]),
        pred_masks=probs,
    )
    out = detector_postprocess(det, 40, 60)  # twice the input size
    assert out.pred_masks.dtype == torch.bool and out.pred_masks.shape == (2, 40, 60)
    expected = torch.zeros(2, 40, 60, dtype=torch.bool)
    expected[0, 4:14, 4:24] = True
    expected[1, 20:40, 20:30] = True
    assert torch.equal(out.pred_masks, expected)
    assert out.pred_boxes.tensor.tolist() == [[4.0, 4.0, 24.0, 14.0], [20.0, 20.0, 40.0, 40.0]]
