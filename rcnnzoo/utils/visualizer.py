"""Draw detections and ground truth on images with PIL and numpy.

Boxes get one colour per class, a tag "name 0.93" filled in that colour, and masks (when
present) a semi-transparent fill with a solid outline. Line widths and the font size follow
the image size, so labels stay readable on ~250 px thumbnails and on full-size images.

    image = np.asarray(Image.open(path).convert("RGB"))
    drawn = draw_instances(image, outputs["instances"].to("cpu"), metadata.thing_classes, 0.5)
    save_image(drawn, "out/vis.png")
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from rcnnzoo.structures import BoxMode

__all__ = ["draw_instances", "draw_dataset_dict", "save_image", "class_color", "PALETTE"]

# Distinct, saturated colours (RGB); class k uses PALETTE[k % len(PALETTE)].
PALETTE: tuple[tuple[int, int, int], ...] = (
    (230, 25, 75), (60, 180, 75), (0, 130, 200), (245, 130, 48), (145, 30, 180),
    (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 190), (0, 128, 128),
    (230, 190, 255), (170, 110, 40), (255, 225, 25), (128, 0, 0), (170, 255, 195),
    (128, 128, 0), (255, 215, 180), (0, 0, 128), (128, 128, 128), (255, 255, 255),
)  # fmt: skip
_NO_CLASS_COLOR = (255, 255, 0)
MASK_ALPHA = 0.45


def class_color(class_id: int | None) -> tuple[int, int, int]:
    """The RGB colour used for ``class_id`` (a fixed colour when the class is unknown)."""
    if class_id is None:
        return _NO_CLASS_COLOR
    return PALETTE[int(class_id) % len(PALETTE)]


@dataclass
class _Object:
    """One thing to draw, in plain Python / numpy."""

    box: tuple[float, float, float, float] | None  # XYXY absolute
    class_id: int | None
    score: float | None
    mask: np.ndarray | None  # bool [H, W]


def _field(instances: Any, *names: str) -> Any:
    for name in names:
        if instances.has(name):
            return instances.get(name)
    return None


def _masks_to_numpy(masks: Any) -> np.ndarray | None:
    """bool ndarray[N, H, W] from a Tensor[N, H, W] or an object with ``.tensor`` (BitMasks)."""
    if masks is None:
        return None
    if hasattr(masks, "tensor"):
        masks = masks.tensor
    if isinstance(masks, torch.Tensor):
        masks = masks.detach().cpu().numpy()
    masks = np.asarray(masks)
    if masks.ndim != 3:
        return None  # polygon lists and other layouts are not drawn
    return masks > 0.5 if masks.dtype != bool else masks


def _objects_from_instances(instances: Any, score_threshold: float) -> list[_Object]:
    boxes = _field(instances, "pred_boxes", "gt_boxes")
    classes = _field(instances, "pred_classes", "gt_classes")
    scores = _field(instances, "scores")
    masks = _masks_to_numpy(_field(instances, "pred_masks", "gt_masks"))
    if boxes is not None:
        boxes = (boxes.tensor if hasattr(boxes, "tensor") else torch.as_tensor(boxes)).detach().cpu().tolist()
    classes = torch.as_tensor(classes).tolist() if classes is not None else None
    scores = torch.as_tensor(scores).float().tolist() if scores is not None else None

    objects = []
    for i in range(len(instances)):
        score = scores[i] if scores is not None else None
        if score is not None and score < score_threshold:
            continue
        objects.append(
            _Object(
                box=tuple(boxes[i]) if boxes is not None else None,
                class_id=int(classes[i]) if classes is not None else None,
                score=score,
                mask=masks[i] if masks is not None else None,
            )
        )
    return objects


def _label(obj: _Object, class_names: Sequence[str] | None) -> str:
    parts = []
    if obj.class_id is not None:
        known = class_names is not None and 0 <= obj.class_id < len(class_names)
        parts.append(class_names[obj.class_id] if known else str(obj.class_id))
    if obj.score is not None:
        parts.append(f"{obj.score:.2f}")
    return " ".join(parts)


def _scale(height: int, width: int) -> tuple[int, int]:
    """(line width, font size) for an image: 2 px / 11 pt at 250 px, growing with the size."""
    side = min(height, width)
    return max(2, round(side / 300)), max(11, round(side / 28))


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)  # scalable font (Pillow >= 10.1 with FreeType)
    except (TypeError, OSError, ImportError):
        return ImageFont.load_default()


def _object_area(obj: _Object) -> float:
    if obj.box is not None:
        x0, y0, x1, y1 = obj.box
        return max(x1 - x0, 0.0) * max(y1 - y0, 0.0)
    return float(obj.mask.sum()) if obj.mask is not None else 0.0


def _mask_outline(mask: np.ndarray, width: int) -> np.ndarray:
    """bool [H, W]: pixels of ``mask`` within ``width`` px of its border (4-neighbour erosion)."""
    inner = mask.copy()
    for _ in range(width):
        padded = np.pad(inner, 1, constant_values=False)
        inner = (
            padded[1:-1, 1:-1] & padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
        )
    return mask & ~inner


def _draw_masks(canvas: np.ndarray, objects: list[_Object], line_width: int) -> np.ndarray:
    """Blend each mask's colour into ``canvas`` (float [H, W, 3]) and paint its outline."""
    for obj in objects:
        if obj.mask is None or obj.mask.shape != canvas.shape[:2]:
            continue
        color = np.array(class_color(obj.class_id), dtype=np.float32)
        canvas[obj.mask] = canvas[obj.mask] * (1 - MASK_ALPHA) + color * MASK_ALPHA
        canvas[_mask_outline(obj.mask, max(1, line_width // 2))] = color
    return canvas


def _text_color(fill: tuple[int, int, int]) -> tuple[int, int, int]:
    """Black on light tags, white on dark ones (ITU-R BT.601 luma)."""
    luma = 0.299 * fill[0] + 0.587 * fill[1] + 0.114 * fill[2]
    return (0, 0, 0) if luma > 150 else (255, 255, 255)


def _draw_tag(draw: ImageDraw.ImageDraw, text: str, anchor: tuple[float, float], color, font, size) -> None:
    """A filled tag with ``text`` just above ``anchor`` (x0, y0), moved inside the image if needed."""
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    pad = max(1, font.size // 6) if hasattr(font, "size") else 1
    tag_w, tag_h = right - left + 2 * pad, bottom - top + 2 * pad
    width, height = size
    x = min(max(anchor[0], 0), max(width - tag_w, 0))
    y = anchor[1] - tag_h
    if y < 0:  # no room above the box: put the tag inside its top edge
        y = min(max(anchor[1], 0), max(height - tag_h, 0))
    draw.rectangle((x, y, x + tag_w - 1, y + tag_h - 1), fill=color)
    draw.text((x + pad - left, y + pad - top), text, fill=_text_color(color), font=font)


def _draw_objects(image: np.ndarray, objects: list[_Object], class_names: Sequence[str] | None) -> np.ndarray:
    height, width = image.shape[:2]
    line_width, font_size = _scale(height, width)
    # Large objects first, so small ones (and their labels) stay visible on top.
    objects = sorted(objects, key=_object_area, reverse=True)
    canvas = _draw_masks(image.astype(np.float32), objects, line_width)
    pil = Image.fromarray(np.clip(np.rint(canvas), 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(pil)
    font = _font(font_size)
    for obj in objects:
        if obj.box is not None:
            x0, y0, x1, y1 = obj.box
            if not all(np.isfinite(obj.box)):
                continue
            # PIL refuses x1 < x0; a degenerate box is drawn as a line.
            draw.rectangle(
                (x0, y0, max(x0, x1), max(y0, y1)), outline=class_color(obj.class_id), width=line_width
            )
    # Labels after every box, so no box line crosses a tag.
    for obj in objects:
        text = _label(obj, class_names)
        if not text:
            continue
        anchor = obj.box[:2] if obj.box is not None else _mask_anchor(obj.mask)
        if anchor is not None:
            _draw_tag(draw, text, anchor, class_color(obj.class_id), font, (width, height))
    return np.asarray(pil)


def _mask_anchor(mask: np.ndarray | None) -> tuple[float, float] | None:
    if mask is None or not mask.any():
        return None
    ys, xs = np.nonzero(mask)
    return float(xs.min()), float(ys.min())


def _check_image(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"Expected an HWC RGB image, got shape {image.shape}")
    if image.dtype != np.uint8:
        raise ValueError(f"Expected a uint8 image, got {image.dtype}")
    return image


def draw_instances(
    image: np.ndarray,
    instances: Any,
    class_names: Sequence[str] | None = None,
    score_threshold: float = 0.0,
) -> np.ndarray:
    """Draw predictions or ground truth on a copy of ``image``.

    Args:
        image: ndarray[H, W, 3] uint8 RGB (the image the instances' coordinates refer to).
        instances: an Instances with ``pred_boxes``/``gt_boxes`` (Boxes[N]), ``pred_classes``/
            ``gt_classes`` (Tensor[N]), optionally ``scores`` (Tensor[N]) and ``pred_masks``/
            ``gt_masks`` (Tensor[N, H, W] bool, or BitMasks).
        class_names: index -> name for the labels (class ids are shown without it).
        score_threshold: detections scoring below it are not drawn.

    Returns:
        ndarray[H, W, 3] uint8: the drawing; ``image`` is not modified.
    """
    image = _check_image(image)
    objects = _objects_from_instances(instances, score_threshold)
    return _draw_objects(image, objects, class_names)


def _annotation_mask(segmentation: Any, height: int, width: int) -> np.ndarray | None:
    if segmentation is None:
        return None
    import pycocotools.mask as mask_util  # only needed for ground-truth masks

    if isinstance(segmentation, list):
        if not segmentation:
            return None
        rle = mask_util.merge(mask_util.frPyObjects(segmentation, height, width))
    elif isinstance(segmentation.get("counts"), list):
        rle = mask_util.frPyObjects(segmentation, height, width)
    else:
        rle = dict(segmentation)
        if isinstance(rle["counts"], str):
            rle["counts"] = rle["counts"].encode("ascii")
    return mask_util.decode(rle).astype(bool)


def draw_dataset_dict(
    image: np.ndarray, dataset_dict: Mapping[str, Any], class_names: Sequence[str] | None = None
) -> np.ndarray:
    """Draw a dataset dict's annotations (boxes, classes, polygon/RLE masks) on a copy of ``image``.

    Args:
        image: ndarray[H, W, 3] uint8 RGB, the image ``dataset_dict`` describes.
        dataset_dict: ``{"annotations": [{bbox, bbox_mode, category_id, segmentation?}], ...}``.
        class_names: contiguous id -> name.

    Returns:
        ndarray[H, W, 3] uint8.
    """
    image = _check_image(image)
    height, width = image.shape[:2]
    objects = []
    for ann in dataset_dict.get("annotations", []):
        box = BoxMode.convert(list(ann["bbox"]), ann.get("bbox_mode", BoxMode.XYXY_ABS), BoxMode.XYXY_ABS)
        objects.append(
            _Object(
                box=tuple(float(v) for v in box),
                class_id=int(ann["category_id"]) if "category_id" in ann else None,
                score=None,
                mask=_annotation_mask(ann.get("segmentation"), height, width),
            )
        )
    return _draw_objects(image, objects, class_names)


def save_image(array: np.ndarray, path: str | os.PathLike) -> None:
    """Write ndarray[H, W, 3] (or [H, W]) uint8 as a PNG, atomically (temp file + ``os.replace``)."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=".png")
    try:
        with os.fdopen(fd, "wb") as f:
            Image.fromarray(np.asarray(array, dtype=np.uint8)).save(f, format="PNG")
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
