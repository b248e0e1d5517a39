"""Cropping regions out of the image and warping them to a square: the input of R-CNN's CNN.

R-CNN (Girshick et al. 2014, §2.1 and appendix A) runs its CNN on each proposal separately: the
proposal's box is dilated so that, once warped, it is framed by ``context_padding`` pixels of the
image around it (16 at 227 px), and the dilated box is warped, whatever its aspect ratio, to the
CNN's square input ("anisotropic scaling"). Where the dilated box leaves the image, the crop is
filled with the mean pixel, which is zero once the image is normalized.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torchvision.ops import roi_align

__all__ = ["context_padded_boxes", "crop_and_warp"]


def context_padded_boxes(boxes: torch.Tensor, output_size: int, context_padding: float) -> torch.Tensor:
    """Dilate each box about its centre so that, warped to ``output_size`` x ``output_size``, the
    original box fills the central ``output_size - 2 * context_padding`` pixels of each side.

    Args:
        boxes (Tensor[R, 4]): XYXY.
        output_size: the side of the warped crop (R-CNN: 227; 224 for VGG16).
        context_padding: pixels of context on each side, in the warped crop (R-CNN: 16).
    Returns:
        Tensor[R, 4]: XYXY, each side scaled by ``output_size / (output_size - 2 * context_padding)``;
        may extend beyond the image.
    """
    if not 0 <= 2 * context_padding < output_size:
        raise ValueError(
            f"context_padding must be in [0, output_size / 2), got {context_padding} for output_size {output_size}"
        )
    scale = output_size / (output_size - 2 * context_padding)
    centers = (boxes[:, :2] + boxes[:, 2:]) / 2
    half_sizes = (boxes[:, 2:] - boxes[:, :2]) / 2 * scale
    return torch.cat([centers - half_sizes, centers + half_sizes], dim=1)


def crop_and_warp(
    images: torch.Tensor, rois: torch.Tensor, output_size: int, context_padding: float = 0.0
) -> torch.Tensor:
    """Crop each region (with context) out of its image and warp it to a square, bilinearly.

    The warp samples the image at the centre of each output pixel, as OpenCV's ``INTER_LINEAR``
    resize of the crop does (R-CNN's code); outside the image the image counts as 0 (the mean
    pixel of a normalized image). It is ``torchvision.ops.roi_align`` with one sample per output
    pixel and ``aligned=True``, run on the images with one pixel of zeros around them: without
    that pixel, roi_align repeats the border pixel up to one pixel outside the image.

    Args:
        images (Tensor[N, C, H, W]): normalized images; padding beyond an image's own size (an
            :class:`ImageList`'s) must be 0, as it is read as context.
        rois (Tensor[R, 5]): ``(image index, x0, y0, x1, y1)`` rows, boxes in pixels of their
            image (see :func:`~rcnnzoo.modeling.poolers.convert_boxes_to_rois`).
        output_size: side of the warped crops.
        context_padding: see :func:`context_padded_boxes`.
    Returns:
        Tensor[R, C, output_size, output_size].
    """
    padded = F.pad(images, (1, 1, 1, 1))
    boxes = context_padded_boxes(rois[:, 1:], output_size, context_padding) + 1.0  # into the padded frame
    rois = torch.cat([rois[:, :1], boxes], dim=1).to(padded.dtype)
    return roi_align(
        padded, rois, (output_size, output_size), spatial_scale=1.0, sampling_ratio=1, aligned=True
    )
