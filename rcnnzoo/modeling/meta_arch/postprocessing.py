"""Mapping detections from the resized input back to the original image."""

from __future__ import annotations

from rcnnzoo.layers import paste_masks_in_image
from rcnnzoo.structures import Boxes, Instances

__all__ = ["detector_postprocess"]


def detector_postprocess(
    results: Instances, output_height: int, output_width: int, mask_threshold: float = 0.5
) -> Instances:
    """Rescale ``pred_boxes`` from ``results.image_size`` to ``(output_height, output_width)`` and clip.

    Boxes that become empty after clipping are dropped. Per-RoI mask probabilities
    ``pred_masks`` (Tensor[R, 1, M, M]) are pasted into their rescaled boxes at the output size
    and binarized at ``mask_threshold``, giving bool Tensor[R, output_height, output_width].
    """
    in_h, in_w = results.image_size
    scale_x, scale_y = output_width / in_w, output_height / in_h
    out = Instances((output_height, output_width), **results.get_fields())
    if out.has("pred_boxes"):
        boxes = Boxes(out.pred_boxes.tensor.clone())
        boxes.scale(scale_x, scale_y)
        boxes.clip(out.image_size)
        out.pred_boxes = boxes
        out = out[boxes.nonempty()]
    if out.has("pred_masks") and out.pred_masks.dim() == 4:  # per-RoI probabilities, not yet pasted
        out.pred_masks = paste_masks_in_image(
            out.pred_masks[:, 0], out.pred_boxes, out.image_size, threshold=mask_threshold
        )
    return out
