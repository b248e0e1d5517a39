"""Mapping detections from the resized input back to the original image."""

from __future__ import annotations

from rcnnzoo.structures import Boxes, Instances

__all__ = ["detector_postprocess"]


def detector_postprocess(results: Instances, output_height: int, output_width: int) -> Instances:
    """Rescale ``pred_boxes`` from ``results.image_size`` to ``(output_height, output_width)`` and clip.

    Boxes that become empty after clipping are dropped.
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
    return out
