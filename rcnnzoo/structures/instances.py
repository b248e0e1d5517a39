"""Instances: the per-image set of objects (ground truth, proposals or detections)."""

from __future__ import annotations

import itertools
from typing import Any

import torch

__all__ = ["Instances"]


class Instances:
    """A set of N objects in one image, as named fields of equal length N.

    Fields are set as attributes (``inst.gt_boxes = Boxes(...)``) and may be any object
    supporting ``len()`` and indexing: Tensors, :class:`Boxes`, masks, lists.
    ``image_size`` is ``(height, width)`` of the image the objects belong to.

    Common fields: ``gt_boxes``, ``gt_classes`` (ground truth); ``proposal_boxes``,
    ``objectness_logits`` (proposals); ``pred_boxes``, ``scores``, ``pred_classes``
    (detections).
    """

    def __init__(self, image_size: tuple[int, int], **fields: Any):
        self._image_size = (int(image_size[0]), int(image_size[1]))
        self._fields: dict[str, Any] = {}
        for k, v in fields.items():
            self.set(k, v)

    @property
    def image_size(self) -> tuple[int, int]:
        return self._image_size

    def __setattr__(self, name: str, val: Any) -> None:
        if name.startswith("_"):
            super().__setattr__(name, val)
        else:
            self.set(name, val)

    def __getattr__(self, name: str) -> Any:
        if name == "_fields" or name not in self._fields:
            fields = list(self.__dict__.get("_fields", {}))
            raise AttributeError(f"Instances has no field {name!r}; fields: {fields}")
        return self._fields[name]

    def set(self, name: str, value: Any) -> None:
        n = len(value)
        if self._fields and len(self) != n:
            raise ValueError(f"Field {name!r} has length {n}, but the Instances have length {len(self)}")
        self._fields[name] = value

    def has(self, name: str) -> bool:
        return name in self._fields

    def remove(self, name: str) -> None:
        del self._fields[name]

    def get(self, name: str) -> Any:
        return self._fields[name]

    def get_fields(self) -> dict[str, Any]:
        return self._fields

    def to(self, *args: Any, **kwargs: Any) -> Instances:
        """A copy whose tensor-like fields are moved with ``.to(*args, **kwargs)``."""
        ret = Instances(self._image_size)
        for k, v in self._fields.items():
            if hasattr(v, "to"):
                v = v.to(*args, **kwargs)
            ret.set(k, v)
        return ret

    def __getitem__(self, item: Any) -> Instances:
        if isinstance(item, int):
            if item >= len(self) or item < -len(self):
                raise IndexError("Instances index out of range")
            item = item % len(self)
            item = slice(item, item + 1)
        ret = Instances(self._image_size)
        for k, v in self._fields.items():
            ret.set(k, v[item])
        return ret

    def __len__(self) -> int:
        for v in self._fields.values():
            return len(v)
        return 0

    def __iter__(self):
        raise NotImplementedError("Instances is not iterable; index it or read its fields")

    @staticmethod
    def cat(instance_lists: list[Instances]) -> Instances:
        """Concatenate Instances of the same image size and fields."""
        if not instance_lists:
            raise ValueError("Instances.cat needs at least one Instances")
        if len(instance_lists) == 1:
            return instance_lists[0]
        size = instance_lists[0].image_size
        ret = Instances(size)
        for k in instance_lists[0]._fields:
            values = [i.get(k) for i in instance_lists]
            v0 = values[0]
            if isinstance(v0, torch.Tensor):
                values = torch.cat(values, dim=0)
            elif isinstance(v0, list):
                values = list(itertools.chain(*values))
            elif hasattr(type(v0), "cat"):
                values = type(v0).cat(values)
            else:
                raise ValueError(f"Cannot concatenate field {k!r} of type {type(v0)}")
            ret.set(k, values)
        return ret

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}: {v}" for k, v in self._fields.items())
        return f"Instances(num_instances={len(self)}, image_height={self._image_size[0]}, image_width={self._image_size[1]}, fields=[{fields}])"
