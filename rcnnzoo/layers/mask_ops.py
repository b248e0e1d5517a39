"""Pasting per-RoI mask probabilities (M x M) back into the full image."""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

__all__ = ["paste_masks_in_image"]

# Bound on the pixels sampled at once; each costs ~20 bytes (grid, sample, index): ~350 MB.
_MAX_PIXELS_PER_CHUNK = 1 << 24


def paste_masks_in_image(
    masks: torch.Tensor,
    boxes: Any,
    image_shape: tuple[int, int],
    threshold: float = 0.5,
    windowed: bool | None = None,
) -> torch.Tensor:
    """Resample each M x M mask into its box of an ``image_shape`` image and binarize it.

    Mask pixel ``(i, j)`` covers the box's cell ``[j, j+1) x [i, i+1)`` in units of ``box size / M``;
    every image pixel is sampled at its centre with bilinear interpolation and zeros outside the
    mask (``grid_sample``, ``align_corners=False``), as detectron2's ``_do_paste_mask``. Boxes may
    cross the image border: only the part inside the image is written.

    All detections go through one ``grid_sample`` call (chunked to bound memory). With
    ``windowed`` each detection samples only a window around its box, padded to the largest
    window in the chunk, which on a CPU saves most of the work; it needs the window sizes on the
    host (one synchronization), so on a GPU the default samples the whole image instead.

    Args:
        masks (Tensor[N, M, M]): probabilities (any float dtype).
        boxes (Tensor[N, 4] or Boxes): XYXY boxes in the image's pixel coordinates.
        image_shape: ``(H, W)`` of the output.
        threshold: a pixel is in the mask when its sampled probability is ``>= threshold`` (> 0).
        windowed: sample a window per box (default: on the CPU) or the whole image.
    Returns:
        bool Tensor[N, H, W] on ``masks``' device.
    """
    boxes = boxes.tensor if hasattr(boxes, "tensor") else boxes
    if masks.dim() != 3 or boxes.shape != (len(masks), 4):
        raise ValueError(
            f"paste_masks_in_image needs masks Tensor[N, M, M] and boxes Tensor[N, 4], "
            f"got {tuple(masks.shape)} and {tuple(boxes.shape)}"
        )
    if threshold <= 0:
        raise ValueError(f"threshold must be > 0, got {threshold}")
    height, width = int(image_shape[0]), int(image_shape[1])
    out = torch.zeros((len(masks), height, width), dtype=torch.bool, device=masks.device)
    if len(masks) == 0 or height == 0 or width == 0:
        return out
    if windowed is None:
        windowed = masks.device.type == "cpu"
    masks = masks.to(torch.float32)
    boxes = boxes.to(device=masks.device, dtype=torch.float32)
    if windowed:
        x0, y0, win_w, win_h = _windows(boxes, masks.shape[-1], height, width)
    else:
        x0 = y0 = torch.zeros(len(masks), dtype=torch.int64, device=masks.device)
        win_w = win_h = None
    max_w, max_h = (int(win_w.max()), int(win_h.max())) if windowed else (width, height)
    num_chunks = max(1, math.ceil(len(masks) * max_h * max_w / _MAX_PIXELS_PER_CHUNK))
    for idx in torch.arange(len(masks), device=masks.device).chunk(num_chunks):
        if not windowed:
            out[idx] = _sample_window(masks[idx], boxes[idx], x0[idx], y0[idx], height, width) >= threshold
            continue
        h, w = int(win_h[idx].max()), int(win_w[idx].max())
        # keep every padded window inside the image: shift it left/up where it would stick out
        cx0, cy0 = x0[idx].clamp(max=width - w), y0[idx].clamp(max=height - h)
        sampled = _sample_window(masks[idx], boxes[idx], cx0, cy0, h, w)
        rows = cy0[:, None] + torch.arange(h, device=masks.device)  # [n, h]
        cols = cx0[:, None] + torch.arange(w, device=masks.device)  # [n, w]
        flat = (idx[:, None] * height + rows)[:, :, None] * width + cols[:, None, :]  # [n, h, w]
        out.view(-1)[flat] = sampled >= threshold
    return out


def _windows(
    boxes: torch.Tensor, mask_size: int, height: int, width: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Integer windows (x0, y0, w, h) holding every pixel a mask can reach, clipped to the image.

    Bilinear sampling with zero padding reaches half a mask pixel beyond the box.
    """
    margin = (boxes[:, 2:] - boxes[:, :2]).clamp(min=0) / (2 * mask_size)
    lo = (boxes[:, :2] - margin).floor().to(torch.int64)
    hi = (boxes[:, 2:] + margin).ceil().to(torch.int64)
    size = torch.tensor([width, height], device=boxes.device)
    lo = torch.minimum(lo.clamp(min=0), size - 1)
    hi = torch.maximum(torch.minimum(hi, size), lo + 1)
    wh = hi - lo
    return lo[:, 0], lo[:, 1], wh[:, 0], wh[:, 1]


def _sample_window(
    masks: torch.Tensor, boxes: torch.Tensor, x0: torch.Tensor, y0: torch.Tensor, h: int, w: int
) -> torch.Tensor:
    """Tensor[N, h, w]: mask n sampled at the pixel centres of the window at (x0[n], y0[n])."""
    device = masks.device
    xs = x0[:, None] + torch.arange(w, device=device) + 0.5  # [N, w] pixel centres
    ys = y0[:, None] + torch.arange(h, device=device) + 0.5
    bw = (boxes[:, 2] - boxes[:, 0]).clamp(min=1e-6)[:, None]
    bh = (boxes[:, 3] - boxes[:, 1]).clamp(min=1e-6)[:, None]
    gx = (xs - boxes[:, 0:1]) / bw * 2 - 1  # box edges at -1 and 1
    gy = (ys - boxes[:, 1:2]) / bh * 2 - 1
    grid = torch.stack([gx[:, None, :].expand(-1, h, -1), gy[:, :, None].expand(-1, -1, w)], dim=3)
    return F.grid_sample(masks[:, None], grid, mode="bilinear", padding_mode="zeros", align_corners=False)[:, 0]
