"""R-CNN's crop-and-warp (rcnnzoo.modeling.meta_arch.crop_warp) against slow per-box references."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from rcnnzoo.modeling.meta_arch import context_padded_boxes, crop_and_warp
from rcnnzoo.structures import ImageList


def _dilate(box: list[float], size: int, padding: float) -> list[float]:
    """The paper's context rule, written out: the box grows about its centre by size / (size - 2p)."""
    x0, y0, x1, y1 = box
    grow = size / (size - 2 * padding)
    cx, cy, half_w, half_h = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2 * grow, (y1 - y0) / 2 * grow
    return [cx - half_w, cy - half_h, cx + half_w, cy + half_h]


def _crop_pad_resize(image: torch.Tensor, box: list[float], size: int) -> torch.Tensor:
    """Reference 1, for whole-pixel boxes at least ``size`` wide and tall: pad the image with the
    mean (0) far enough, slice the box out, resize it bilinearly (pixel-centre convention)."""
    margin = 64
    padded = F.pad(image, (margin, margin, margin, margin))
    x0, y0, x1, y1 = (int(round(v)) + margin for v in box)
    crop = padded[:, y0:y1, x0:x1]
    return F.interpolate(
        crop[None], size=(size, size), mode="bilinear", align_corners=False, antialias=False
    )[0]


def _sample_bilinear(image: torch.Tensor, box: list[float], size: int) -> torch.Tensor:
    """Reference 2, for any box: output pixel (i, j) is the zero-extended image sampled bilinearly
    at ``x0 + (j + 0.5) * w / size`` (pixel-edge coordinates), by grid_sample."""
    _, height, width = image.shape
    x0, y0, x1, y1 = box
    centres = (torch.arange(size, dtype=torch.float64) + 0.5) / size
    xs = x0 + centres * (x1 - x0)  # pixel-edge coordinates: pixel k covers [k, k + 1)
    ys = y0 + centres * (y1 - y0)
    grid_x = (2 * xs / width - 1)[None, :].expand(size, size)  # grid_sample, align_corners=False
    grid_y = (2 * ys / height - 1)[:, None].expand(size, size)
    grid = torch.stack([grid_x, grid_y], dim=-1)[None].float()
    return F.grid_sample(image[None], grid, mode="bilinear", padding_mode="zeros", align_corners=False)[0]


def _rois(boxes: list[list[float]], image_index: int = 0) -> torch.Tensor:
    return torch.tensor([[image_index, *b] for b in boxes], dtype=torch.float32)


def test_context_padding_frames_the_box_with_the_papers_margin():
    box = torch.tensor([[10.0, 20.0, 110.0, 70.0]])
    dilated = context_padded_boxes(box, output_size=227, context_padding=16)
    # warped to 227 px, the original box spans 16 .. 211 along each axis
    x0, y0, x1, y1 = dilated[0].tolist()
    assert (10 - x0) / (x1 - x0) * 227 == pytest.approx(16)
    assert (110 - x0) / (x1 - x0) * 227 == pytest.approx(211)
    assert (20 - y0) / (y1 - y0) * 227 == pytest.approx(16)
    assert torch.equal(context_padded_boxes(box, 227, 0), box)
    with pytest.raises(ValueError, match="context_padding"):
        context_padded_boxes(box, 32, 16)


def test_whole_pixel_boxes_match_crop_pad_resize_including_boxes_across_the_border():
    torch.manual_seed(0)
    image = torch.randn(3, 40, 50)
    size, padding = 16, 2  # boxes grow by 16 / 12: widths that are multiples of 6 stay whole
    boxes = [
        [6.0, 6.0, 24.0, 30.0],  # inside, context inside
        [0.0, 0.0, 12.0, 18.0],  # at the top-left corner: the context leaves the image
        [38.0, 22.0, 50.0, 40.0],  # at the bottom-right corner
        [-6.0, 10.0, 18.0, 22.0],  # a box itself across the left border
        [44.0, -12.0, 62.0, 12.0],  # across the right and top borders
    ]
    dilated = [_dilate(b, size, padding) for b in boxes]
    assert all(abs(v - round(v)) < 1e-9 for b in dilated for v in b)
    out = crop_and_warp(image[None], _rois(boxes), size, padding)
    expected = torch.stack([_crop_pad_resize(image, b, size) for b in dilated])
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)


def test_any_box_matches_bilinear_sampling_of_the_zero_extended_image():
    torch.manual_seed(1)
    image = torch.randn(3, 30, 45)
    size, padding = 12, 1.5
    boxes = [
        [3.3, 4.7, 9.1, 8.2],  # small: warping enlarges it
        [0.0, 0.0, 45.0, 30.0],  # the whole image
        [-4.2, 25.5, 7.9, 38.0],  # across the bottom-left corner
        [40.5, 1.25, 44.75, 29.0],  # thin, at the right border
        [50.0, 35.0, 60.0, 40.0],  # entirely outside: all mean (zero)
    ]
    out = crop_and_warp(image[None], _rois(boxes), size, padding)
    expected = torch.stack([_sample_bilinear(image, _dilate(b, size, padding), size) for b in boxes])
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
    assert torch.count_nonzero(out[-1]) == 0


def test_a_batch_of_images_of_different_sizes_crops_each_from_its_own_image():
    torch.manual_seed(2)
    small, large = torch.randn(3, 20, 24), torch.randn(3, 36, 40)
    batch = ImageList.from_tensors([small, large])  # the small image is padded with zeros
    boxes = {0: [[12.0, 8.0, 26.0, 22.0], [2.0, 3.0, 10.0, 9.0]], 1: [[20.0, 10.0, 39.0, 35.0]]}
    rois = torch.cat([_rois(b, i) for i, b in boxes.items()])
    out = crop_and_warp(batch.tensor, rois, 10, 1)
    # the first box leaves the small image to the right: it sees the mean there, not the large image
    expected = [
        _sample_bilinear(img, _dilate(b, 10, 1), 10)
        for img, bs in ((small, boxes[0]), (large, boxes[1]))
        for b in bs
    ]
    torch.testing.assert_close(out, torch.stack(expected), atol=1e-5, rtol=1e-5)


def test_no_box_gives_no_crop():
    out = crop_and_warp(torch.randn(1, 3, 8, 8), torch.zeros(0, 5), 4, 0)
    assert out.shape == (0, 3, 4, 4)
