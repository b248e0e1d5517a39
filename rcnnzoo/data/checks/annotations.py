"""The annotations of a list of dataset dicts as flat numpy arrays, which the box, category and
anchor checks share: one pass over the dicts, then vectorised checks, fast on COCO-sized datasets.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from rcnnzoo.structures import BoxMode

__all__: list[str] = []

_XYWH_MODES = (int(BoxMode.XYWH_ABS), int(BoxMode.XYWH_REL))
_REL_MODES = (int(BoxMode.XYXY_REL), int(BoxMode.XYWH_REL))


@dataclass
class _Annotations:
    """Every annotation of a list of dataset dicts as flat arrays (N annotations, M images).

    Attributes:
        image: int64[N], the index of each annotation's image in the dicts.
        index: int64[N], its position in that image's ``annotations``.
        raw: float64[N, 4], ``bbox`` as written (NaN where missing or not 4 numbers).
        mode: int64[N], ``bbox_mode``.
        category: int64[N], ``category_id`` (-1 where missing or not an integer).
        crowd: bool[N], ``iscrowd``.
        height, width: float64[N], the size of each annotation's image.
    """

    image: np.ndarray
    index: np.ndarray
    raw: np.ndarray
    mode: np.ndarray
    category: np.ndarray
    crowd: np.ndarray
    height: np.ndarray
    width: np.ndarray

    @classmethod
    def from_dicts(cls, dicts: Sequence[dict]) -> _Annotations:
        image, index, raw, mode, category, crowd = [], [], [], [], [], []
        sizes = np.asarray([(d.get("height", np.nan), d.get("width", np.nan)) for d in dicts], np.float64)
        for i, d in enumerate(dicts):
            for j, a in enumerate(d.get("annotations", ())):
                image.append(i)
                index.append(j)
                raw.append(_four_numbers(a.get("bbox")))
                mode.append(int(a.get("bbox_mode", BoxMode.XYXY_ABS)))
                cid = a.get("category_id")
                category.append(
                    cid if isinstance(cid, (int, np.integer)) and not isinstance(cid, bool) else -1
                )
                crowd.append(bool(a.get("iscrowd", 0)))
        image_arr = np.asarray(image, np.int64)
        sizes = sizes.reshape(-1, 2)
        return cls(
            image=image_arr,
            index=np.asarray(index, np.int64),
            raw=np.asarray(raw, np.float64).reshape(-1, 4),
            mode=np.asarray(mode, np.int64),
            category=np.asarray(category, np.int64),
            crowd=np.asarray(crowd, bool),
            height=sizes[image_arr, 0],
            width=sizes[image_arr, 1],
        )

    def __len__(self) -> int:
        return len(self.image)

    def pixel_raw(self) -> np.ndarray:
        """float64[N, 4]: ``raw`` in pixels (relative modes scaled by the image size), layout unchanged."""
        out = self.raw.copy()
        rel = np.isin(self.mode, _REL_MODES)
        out[rel] *= np.stack([self.width, self.height, self.width, self.height], axis=1)[rel]
        return out

    def xyxy(self) -> np.ndarray:
        """float64[N, 4]: the boxes as absolute XYXY."""
        out = self.pixel_raw()
        wh = np.isin(self.mode, _XYWH_MODES)
        out[wh, 2:] += out[wh, :2]
        return out


def _four_numbers(bbox: Any) -> list[float]:
    try:
        values = [float(v) for v in bbox]
    except (TypeError, ValueError):
        return [math.nan] * 4
    return values if len(values) == 4 else [math.nan] * 4
