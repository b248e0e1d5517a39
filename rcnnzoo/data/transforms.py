"""Augmentations: random policies that produce deterministic :class:`Transform` s.

An :class:`Augmentation` looks at an image and returns a ``Transform``; the transform then
applies the *same* geometric change to the image (``apply_image``, np.ndarray[H, W, C] uint8),
to boxes (``apply_box``, np.ndarray[N, 4] XYXY absolute), to points and polygons
(``apply_coords`` np.ndarray[N, 2] (x, y), ``apply_polygons``) and to masks
(``apply_segmentation``, np.ndarray[H, W]). The transform classes are fvcore's, plus a
:class:`ResizeTransform` that resizes uint8 images with OpenCV (fvcore's ScaleTransform goes
through float torch tensors, which is several times slower on the CPU).

Randomness comes from ``np.random`` (the global state): seeding it, as the data loader does
for each worker, makes the augmentations reproducible.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import cv2
import numpy as np
from fvcore.transforms.transform import (
    HFlipTransform,
    NoOpTransform,
    Transform,
    TransformList,
    VFlipTransform,
)

__all__ = [
    "Augmentation",
    "HFlipTransform",
    "NoOpTransform",
    "RandomFlip",
    "ResizeShortestEdge",
    "ResizeTransform",
    "Transform",
    "TransformList",
    "VFlipTransform",
    "apply_augmentations",
]


class ResizeTransform(Transform):
    """Resize an image from ``(h, w)`` to ``(new_h, new_w)``; coordinates are scaled accordingly."""

    def __init__(self, h: int, w: int, new_h: int, new_w: int, interp: int = cv2.INTER_LINEAR):
        super().__init__()
        self._set_attributes(locals())

    def apply_image(self, img: np.ndarray, interp: int | None = None) -> np.ndarray:
        """img: np.ndarray[h, w] or [h, w, C] -> [new_h, new_w(, C)], same dtype."""
        if img.shape[:2] != (self.h, self.w):
            raise ValueError(f"ResizeTransform expects an image of {(self.h, self.w)}, got {img.shape[:2]}")
        out = cv2.resize(
            img, (self.new_w, self.new_h), interpolation=self.interp if interp is None else interp
        )
        if img.ndim == 3 and out.ndim == 2:  # OpenCV drops a trailing channel axis of size 1
            out = out[:, :, None]
        return out

    def apply_coords(self, coords: np.ndarray) -> np.ndarray:
        """coords: np.ndarray[N, 2] of (x, y), scaled in place and returned."""
        coords[:, 0] = coords[:, 0] * (self.new_w / self.w)
        coords[:, 1] = coords[:, 1] * (self.new_h / self.h)
        return coords

    def apply_segmentation(self, segmentation: np.ndarray) -> np.ndarray:
        """Masks and label maps are resized with nearest neighbour so labels stay labels."""
        return self.apply_image(segmentation, interp=cv2.INTER_NEAREST)

    def inverse(self) -> Transform:
        return ResizeTransform(self.new_h, self.new_w, self.h, self.w, self.interp)


class Augmentation:
    """A (possibly random) policy: ``get_transform(image)`` decides the transform for one image."""

    def get_transform(self, image: np.ndarray) -> Transform:
        """image: np.ndarray[H, W, C]. Returns the transform to apply to it and its annotations."""
        raise NotImplementedError

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({args})"


class ResizeShortestEdge(Augmentation):
    """Scale the image so its short edge is ``short_edge_length`` and its long edge at most ``max_size``.

    Args:
        short_edge_length: one length, or several to draw from: with ``sample_style="choice"``
            one of them is picked per image; with ``"range"`` a length is drawn uniformly from
            ``[min, max]`` (inclusive) of a pair.
        max_size: cap on the long edge after resizing (the aspect ratio is kept).
        sample_style: "choice" or "range".
        interp: OpenCV interpolation flag for the image.
    """

    def __init__(
        self,
        short_edge_length: int | Sequence[int],
        max_size: int = sys.maxsize,
        sample_style: str = "choice",
        interp: int = cv2.INTER_LINEAR,
    ):
        lengths = (short_edge_length,) if isinstance(short_edge_length, int) else tuple(short_edge_length)
        if not lengths or any(int(v) <= 0 for v in lengths):
            raise ValueError(f"short_edge_length must be positive int(s), got {short_edge_length!r}")
        if sample_style not in ("choice", "range"):
            raise ValueError(f"sample_style must be 'choice' or 'range', got {sample_style!r}")
        if sample_style == "range" and len(lengths) != 2:
            raise ValueError(
                f"sample_style='range' needs (min, max) short_edge_length, got {short_edge_length!r}"
            )
        self.short_edge_length = tuple(int(v) for v in lengths)
        self.max_size = max_size
        self.sample_style = sample_style
        self.interp = interp

    def _sample_length(self) -> int:
        if self.sample_style == "range":
            lo, hi = sorted(self.short_edge_length)
            return int(np.random.randint(lo, hi + 1))
        return int(self.short_edge_length[np.random.randint(len(self.short_edge_length))])

    @staticmethod
    def get_output_shape(h: int, w: int, short_edge_length: int, max_size: int) -> tuple[int, int]:
        """(new_h, new_w) for an image of ``(h, w)``: short edge scaled to the length, long edge capped."""
        scale = short_edge_length / min(h, w)
        if max(h, w) * scale > max_size:
            scale = max_size / max(h, w)
        return int(h * scale + 0.5), int(w * scale + 0.5)

    def get_transform(self, image: np.ndarray) -> Transform:
        h, w = image.shape[:2]
        new_h, new_w = self.get_output_shape(h, w, self._sample_length(), self.max_size)
        if (new_h, new_w) == (h, w):
            return NoOpTransform()
        return ResizeTransform(h, w, new_h, new_w, self.interp)


class RandomFlip(Augmentation):
    """Flip the image horizontally (or vertically) with probability ``prob``."""

    def __init__(self, prob: float = 0.5, *, horizontal: bool = True, vertical: bool = False):
        if horizontal == vertical:
            raise ValueError("RandomFlip needs exactly one of horizontal=True or vertical=True")
        if not 0.0 <= prob <= 1.0:
            raise ValueError(f"RandomFlip prob must be in [0, 1], got {prob}")
        self.prob = prob
        self.horizontal = horizontal
        self.vertical = vertical

    def get_transform(self, image: np.ndarray) -> Transform:
        h, w = image.shape[:2]
        if np.random.rand() >= self.prob:
            return NoOpTransform()
        return HFlipTransform(w) if self.horizontal else VFlipTransform(h)


def apply_augmentations(
    augmentations: Sequence[Augmentation | Transform], image: np.ndarray
) -> tuple[np.ndarray, TransformList]:
    """Apply augmentations (or fixed transforms) in order.

    Args:
        augmentations: each one's transform is decided on the image as transformed so far.
        image: np.ndarray[H, W, C] (or [H, W]).

    Returns:
        the transformed image and the :class:`TransformList` to apply to its annotations.
    """
    transforms = []
    for aug in augmentations:
        tfm = aug if isinstance(aug, Transform) else aug.get_transform(image)
        image = tfm.apply_image(image)
        transforms.append(tfm)
    return image, TransformList(transforms)
