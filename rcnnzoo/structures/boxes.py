"""Boxes: an (N, 4) tensor of absolute XYXY boxes, plus the operations models need.

Convention (GUIDE §4): boxes are absolute ``(x0, y0, x1, y1)`` floats in the pixel
coordinates of the image they belong to. Other layouts are converted at the edges with
:class:`BoxMode`.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Any

import torch
from torchvision.ops import box_area, box_iou

__all__ = ["Boxes", "BoxMode", "pairwise_iou", "pairwise_ioa"]


class BoxMode(IntEnum):
    """Box layouts found in datasets. Values match detectron2's, so its dataset dicts load."""

    XYXY_ABS = 0  # (x0, y0, x1, y1) in pixels
    XYWH_ABS = 1  # (x0, y0, w, h) in pixels, COCO's layout
    XYXY_REL = 2  # (x0, y0, x1, y1) as fractions of the image size
    XYWH_REL = 3

    @staticmethod
    def convert(box: Any, from_mode: BoxMode, to_mode: BoxMode) -> Any:
        """Convert absolute boxes between XYXY and XYWH.

        Args:
            box: a list/tuple of 4 numbers, or a Tensor / ndarray of shape (N, 4) or (4,).
        Returns:
            the converted box(es), of the same type as the input.
        """
        from_mode, to_mode = BoxMode(from_mode), BoxMode(to_mode)
        if from_mode == to_mode:
            return box
        rel = {BoxMode.XYXY_REL, BoxMode.XYWH_REL}
        if from_mode in rel or to_mode in rel:
            raise ValueError("Relative box modes need the image size; convert them where it is known")
        original_type = type(box)
        is_seq = isinstance(box, (list, tuple))
        if is_seq:
            if len(box) != 4:
                raise ValueError(f"A single box must have 4 numbers, got {len(box)}: {box}")
            arr = torch.tensor(box, dtype=torch.float64)[None]
        elif isinstance(box, torch.Tensor):
            arr = box.clone()
        else:  # numpy
            arr = torch.from_numpy(box.astype("float64", copy=True))
        single = arr.dim() == 1
        arr = arr.reshape(-1, 4)
        if from_mode == BoxMode.XYWH_ABS:
            arr[:, 2] += arr[:, 0]
            arr[:, 3] += arr[:, 1]
        else:
            arr[:, 2] -= arr[:, 0]
            arr[:, 3] -= arr[:, 1]
        if single:
            arr = arr[0]
        if is_seq:
            return original_type(arr.flatten().tolist())
        if isinstance(box, torch.Tensor):
            return arr
        return arr.numpy()


class Boxes:
    """A list of N boxes stored as ``tensor`` (Tensor[N, 4], XYXY absolute, float)."""

    def __init__(self, tensor: torch.Tensor):
        if not isinstance(tensor, torch.Tensor):
            tensor = torch.as_tensor(tensor, dtype=torch.float32)
        if tensor.numel() == 0:
            tensor = tensor.reshape(0, 4).to(dtype=torch.float32)
        if tensor.dim() != 2 or tensor.size(-1) != 4:
            raise ValueError(f"Boxes expects a Tensor[N, 4], got shape {tuple(tensor.shape)}")
        self.tensor = tensor

    def clone(self) -> Boxes:
        return Boxes(self.tensor.clone())

    def to(self, *args: Any, **kwargs: Any) -> Boxes:
        return Boxes(self.tensor.to(*args, **kwargs))

    @property
    def device(self) -> torch.device:
        return self.tensor.device

    def area(self) -> torch.Tensor:
        """Tensor[N]: the area of each box."""
        return box_area(self.tensor)

    def clip(self, image_size: tuple[int, int]) -> None:
        """Clip the boxes in place to an image of ``(height, width)``."""
        h, w = image_size
        x0, y0, x1, y1 = self.tensor.unbind(dim=1)
        self.tensor = torch.stack(
            (x0.clamp(0, w), y0.clamp(0, h), x1.clamp(0, w), y1.clamp(0, h)), dim=1
        )

    def nonempty(self, threshold: float = 0.0) -> torch.Tensor:
        """Tensor[N] bool: boxes whose width and height are both above ``threshold``."""
        wh = self.tensor[:, 2:] - self.tensor[:, :2]
        return (wh > threshold).all(dim=1)

    def inside_box(self, box_size: tuple[int, int], boundary_threshold: int = 0) -> torch.Tensor:
        """Tensor[N] bool: boxes lying inside ``(height, width)`` with the given slack."""
        h, w = box_size
        t = self.tensor
        return (
            (t[:, 0] >= -boundary_threshold)
            & (t[:, 1] >= -boundary_threshold)
            & (t[:, 2] < w + boundary_threshold)
            & (t[:, 3] < h + boundary_threshold)
        )

    def get_centers(self) -> torch.Tensor:
        """Tensor[N, 2]: the (x, y) centers."""
        return (self.tensor[:, :2] + self.tensor[:, 2:]) / 2

    def scale(self, scale_x: float, scale_y: float) -> None:
        """Scale the coordinates in place."""
        self.tensor[:, 0::2] *= scale_x
        self.tensor[:, 1::2] *= scale_y

    @classmethod
    def cat(cls, boxes_list: list[Boxes]) -> Boxes:
        if not boxes_list:
            return cls(torch.empty(0, 4))
        return cls(torch.cat([b.tensor for b in boxes_list], dim=0))

    def __getitem__(self, item: Any) -> Boxes:
        if isinstance(item, int):
            return Boxes(self.tensor[item].view(1, -1))
        b = self.tensor[item]
        if b.dim() != 2:
            raise IndexError(f"Indexing Boxes with {item} did not return a matrix")
        return Boxes(b)

    def __len__(self) -> int:
        return self.tensor.shape[0]

    def __iter__(self):
        yield from self.tensor

    def __repr__(self) -> str:
        return f"Boxes({self.tensor})"


def pairwise_iou(boxes1: Boxes, boxes2: Boxes) -> torch.Tensor:
    """Tensor[N, M]: IoU of every pair (torchvision's ``box_iou``)."""
    return box_iou(boxes1.tensor, boxes2.tensor)


def pairwise_ioa(boxes1: Boxes, boxes2: Boxes) -> torch.Tensor:
    """Tensor[N, M]: intersection over the area of ``boxes2`` (for crowd regions)."""
    a, b = boxes1.tensor, boxes2.tensor
    lt = torch.max(a[:, None, :2], b[None, :, :2])
    rb = torch.min(a[:, None, 2:], b[None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(dim=2)
    area2 = box_area(b)
    return torch.where(inter > 0, inter / area2.clamp(min=1e-12)[None], torch.zeros_like(inter))
