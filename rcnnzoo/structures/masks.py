"""Instance masks: BitMasks (a bool Tensor[N, H, W]) and PolygonMasks (COCO polygons).

Both give the mask branch its training targets through :meth:`crop_and_resize`: each RoI's
ground-truth mask cut out of the image and resampled to ``M x M`` (Mask R-CNN §3).
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pycocotools.mask as mask_util
import torch
from torchvision.ops import roi_align

from .boxes import Boxes

__all__ = ["BitMasks", "PolygonMasks", "polygons_to_bitmask", "rasterize_polygons_within_box"]


def _as_index(item: Any) -> Any:
    """An int becomes a length-1 slice, so indexing always keeps the instance dimension."""
    if isinstance(item, int):
        return slice(item, item + 1) if item != -1 else slice(-1, None)
    return item


class BitMasks:
    """N full-image binary masks stored as ``tensor`` (bool Tensor[N, H, W]).

    Coordinates are those of the image the masks belong to; pixel ``(y, x)`` covers the
    square ``[x, x+1) x [y, y+1)``, the convention of :class:`Boxes`.
    """

    def __init__(self, tensor: torch.Tensor | np.ndarray):
        if isinstance(tensor, np.ndarray):
            tensor = torch.from_numpy(tensor)
        tensor = torch.as_tensor(tensor)
        if tensor.dim() != 3:
            raise ValueError(f"BitMasks expects a Tensor[N, H, W], got shape {tuple(tensor.shape)}")
        self.tensor = tensor.to(torch.bool)

    @property
    def image_size(self) -> tuple[int, int]:
        return int(self.tensor.shape[1]), int(self.tensor.shape[2])

    @property
    def device(self) -> torch.device:
        return self.tensor.device

    def to(self, *args: Any, **kwargs: Any) -> BitMasks:
        return BitMasks(self.tensor.to(*args, **kwargs))

    def __getitem__(self, item: Any) -> BitMasks:
        """An int, slice, bool mask or index Tensor; the result always has 3 dimensions."""
        return BitMasks(self.tensor[_as_index(item)])

    def __len__(self) -> int:
        return self.tensor.shape[0]

    def __iter__(self):
        yield from self.tensor

    def __repr__(self) -> str:
        return f"BitMasks(num_instances={len(self)}, image_size={self.image_size})"

    @classmethod
    def cat(cls, masks_list: list[BitMasks]) -> BitMasks:
        """Concatenate masks of the same image size."""
        if not masks_list:
            raise ValueError("BitMasks.cat needs at least one BitMasks")
        return cls(torch.cat([m.tensor for m in masks_list], dim=0))

    def nonempty(self) -> torch.Tensor:
        """Tensor[N] bool: masks with at least one pixel set."""
        return self.tensor.flatten(1).any(dim=1)

    def area(self) -> torch.Tensor:
        """Tensor[N] int64: pixels set in each mask."""
        return self.tensor.flatten(1).sum(dim=1)

    def flip(self, horizontal: bool = True) -> BitMasks:
        """The masks mirrored left-right (``horizontal``) or top-bottom, as :class:`RandomFlip` does."""
        return BitMasks(self.tensor.flip(dims=(2,) if horizontal else (1,)))

    def get_bounding_boxes(self) -> Boxes:
        """Boxes[N]: the tight XYXY box of each mask (pixel edges); all zeros for an empty mask."""
        n, h, w = self.tensor.shape
        boxes = torch.zeros(n, 4, dtype=torch.float32, device=self.device)
        if n == 0:
            return Boxes(boxes)
        x_any = self.tensor.any(dim=1)  # [N, W]
        y_any = self.tensor.any(dim=2)  # [N, H]
        # argmax on int gives the first maximum: the first set column/row from either side
        x0 = x_any.to(torch.uint8).argmax(dim=1)
        x1 = w - x_any.flip(1).to(torch.uint8).argmax(dim=1)
        y0 = y_any.to(torch.uint8).argmax(dim=1)
        y1 = h - y_any.flip(1).to(torch.uint8).argmax(dim=1)
        keep = self.nonempty()
        boxes[keep] = torch.stack([x0, y0, x1, y1], dim=1)[keep].to(torch.float32)
        return Boxes(boxes)

    def crop_and_resize(
        self, boxes: torch.Tensor, mask_size: int, indices: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Cut each box out of its mask and resample it to ``mask_size x mask_size`` (RoIAlign).

        Bilinear sampling with ``aligned=True`` (pixel centres at half-integers, as detectron2's
        mask targets), then binarized at 0.5.

        Args:
            boxes (Tensor[R, 4]): XYXY boxes in the masks' image coordinates.
            mask_size: M.
            indices (Tensor[R] int64, optional): which mask each box crops; default box ``i``
                crops mask ``i`` (then R must equal N). Indexing here instead of copying masks
                keeps memory at N full-size masks however many RoIs share them.
        Returns:
            float32 Tensor[R, M, M] of 0s and 1s, on the masks' device.
        """
        if indices is None:
            if len(boxes) != len(self):
                raise ValueError(f"crop_and_resize got {len(boxes)} boxes for {len(self)} masks")
            indices = torch.arange(len(boxes), device=self.device)
        if len(boxes) == 0:
            return torch.zeros((0, mask_size, mask_size), dtype=torch.float32, device=self.device)
        boxes = boxes.to(device=self.device, dtype=torch.float32)
        rois = torch.cat([indices.to(device=self.device, dtype=torch.float32)[:, None], boxes], dim=1)
        masks = self.tensor[:, None].to(torch.float32)
        out = roi_align(masks, rois, (mask_size, mask_size), spatial_scale=1.0, sampling_ratio=0, aligned=True)
        return (out[:, 0] >= 0.5).to(torch.float32)


def polygons_to_bitmask(polygons: list[np.ndarray], height: int, width: int) -> np.ndarray:
    """bool ndarray[height, width]: the union of the polygons (flat ``[x0, y0, x1, y1, ...]``)."""
    if not polygons:
        return np.zeros((height, width), dtype=bool)
    rles = mask_util.frPyObjects([np.asarray(p, dtype=np.float64).reshape(-1).tolist() for p in polygons], height, width)
    return mask_util.decode(mask_util.merge(rles)).astype(bool)


def rasterize_polygons_within_box(polygons: list[np.ndarray], box: np.ndarray, mask_size: int) -> torch.Tensor:
    """Rasterize one instance's polygons inside ``box`` (XYXY) at ``mask_size x mask_size``.

    The polygons are shifted to the box's corner and scaled by ``M / box side``, then drawn:
    the target of the original Mask R-CNN (Detectron), free of resampling blur.

    Returns:
        bool Tensor[M, M].
    """
    w, h = box[2] - box[0], box[3] - box[1]
    sx, sy = mask_size / max(w, 0.1), mask_size / max(h, 0.1)
    scaled = []
    for p in polygons:
        q = np.asarray(p, dtype=np.float64).reshape(-1, 2).copy()
        q[:, 0] = (q[:, 0] - box[0]) * sx
        q[:, 1] = (q[:, 1] - box[1]) * sy
        scaled.append(q.reshape(-1))
    return torch.from_numpy(polygons_to_bitmask(scaled, mask_size, mask_size))


class PolygonMasks:
    """N instances, each a list of polygons (flat float64 arrays ``[x0, y0, x1, y1, ...]``, >= 3 points).

    COCO's ``segmentation`` polygons, in the coordinates of the image they belong to. They stay
    on the CPU as numpy arrays; :meth:`to` is a no-op kept for :meth:`Instances.to`.
    """

    def __init__(self, polygons: list[list[Any]]):
        if not isinstance(polygons, (list, tuple)):
            raise TypeError(f"PolygonMasks expects a list (instances) of lists of polygons, got {type(polygons)}")
        self.polygons: list[list[np.ndarray]] = []
        for i, inst in enumerate(polygons):
            if not isinstance(inst, (list, tuple)):
                raise TypeError(f"Instance {i} of PolygonMasks must be a list of polygons, got {type(inst)}")
            polys = []
            for p in inst:
                arr = np.asarray(p.cpu() if isinstance(p, torch.Tensor) else p, dtype=np.float64).reshape(-1)
                if len(arr) % 2 or len(arr) < 6:
                    raise ValueError(f"A polygon needs an even number (>= 6) of coordinates, got {len(arr)}")
                polys.append(arr)
            self.polygons.append(polys)

    def to(self, *args: Any, **kwargs: Any) -> PolygonMasks:
        return self

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    def __getitem__(self, item: Any) -> PolygonMasks:
        """An int, slice, list of ints, bool or int64 Tensor; the result is always a PolygonMasks."""
        if isinstance(item, int):
            return PolygonMasks([self.polygons[item]])
        if isinstance(item, slice):
            return PolygonMasks(self.polygons[item])
        if isinstance(item, torch.Tensor):
            if item.dtype == torch.bool:
                if len(item) != len(self):
                    raise IndexError(f"Bool index of length {len(item)} for {len(self)} masks")
                item = item.nonzero().squeeze(1)
            item = item.cpu().tolist()
        return PolygonMasks([self.polygons[i] for i in item])

    def __len__(self) -> int:
        return len(self.polygons)

    def __iter__(self):
        yield from self.polygons

    def __repr__(self) -> str:
        return f"PolygonMasks(num_instances={len(self)})"

    @classmethod
    def cat(cls, masks_list: list[PolygonMasks]) -> PolygonMasks:
        return cls([p for m in masks_list for p in copy.copy(m.polygons)])

    def nonempty(self) -> torch.Tensor:
        """Tensor[N] bool: instances with at least one polygon."""
        return torch.tensor([len(p) > 0 for p in self.polygons], dtype=torch.bool)

    def get_bounding_boxes(self) -> Boxes:
        """Boxes[N]: the XYXY extent of each instance's polygon vertices (zeros when it has none)."""
        boxes = torch.zeros(len(self), 4, dtype=torch.float32)
        for i, polys in enumerate(self.polygons):
            if polys:
                xy = np.concatenate([p.reshape(-1, 2) for p in polys])
                boxes[i] = torch.as_tensor([*xy.min(axis=0), *xy.max(axis=0)], dtype=torch.float32)
        return Boxes(boxes)

    def to_bitmasks(self, height: int, width: int) -> BitMasks:
        """The instances rasterized at ``(height, width)``."""
        if not self.polygons:
            return BitMasks(torch.zeros((0, height, width), dtype=torch.bool))
        return BitMasks(np.stack([polygons_to_bitmask(p, height, width) for p in self.polygons]))

    def crop_and_resize(
        self, boxes: torch.Tensor, mask_size: int, indices: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Each box's instance rasterized inside the box at ``mask_size x mask_size``.

        Args, returns: as :meth:`BitMasks.crop_and_resize` (float32 Tensor[R, M, M] of 0s and 1s,
        on ``boxes``' device). Loops over the boxes in Python: polygons are a CPU format.
        """
        if indices is None:
            if len(boxes) != len(self):
                raise ValueError(f"crop_and_resize got {len(boxes)} boxes for {len(self)} masks")
            indices = torch.arange(len(boxes))
        if len(boxes) == 0:
            return torch.zeros((0, mask_size, mask_size), dtype=torch.float32, device=boxes.device)
        np_boxes = boxes.detach().to("cpu", torch.float64).numpy()
        masks = [
            rasterize_polygons_within_box(self.polygons[i], b, mask_size)
            for i, b in zip(indices.cpu().tolist(), np_boxes)
        ]
        return torch.stack(masks).to(device=boxes.device, dtype=torch.float32)
