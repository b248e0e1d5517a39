"""ImageList: images of different sizes padded into one batch tensor."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

__all__ = ["ImageList"]


class ImageList:
    """A batch of images padded to a common size, with the size of each before padding.

    Attributes:
        tensor (Tensor[N, C, H, W]): the padded batch.
        image_sizes (list[tuple[int, int]]): ``(h, w)`` of each image before padding.
    """

    def __init__(self, tensor: torch.Tensor, image_sizes: list[tuple[int, int]]):
        self.tensor = tensor
        self.image_sizes = image_sizes

    def __len__(self) -> int:
        return len(self.image_sizes)

    def __getitem__(self, idx: int) -> torch.Tensor:
        """Tensor[C, h, w]: image ``idx`` without its padding."""
        h, w = self.image_sizes[idx]
        return self.tensor[idx, ..., :h, :w]

    def to(self, *args: Any, **kwargs: Any) -> ImageList:
        return ImageList(self.tensor.to(*args, **kwargs), self.image_sizes)

    @property
    def device(self) -> torch.device:
        return self.tensor.device

    @staticmethod
    def from_tensors(
        tensors: list[torch.Tensor], size_divisibility: int = 0, pad_value: float = 0.0
    ) -> ImageList:
        """Pad a list of Tensor[C, Hi, Wi] (same C) into an ImageList.

        Args:
            size_divisibility: if > 0, pad H and W up to a multiple of it (the backbone's
                largest stride, so FPN levels line up).
        """
        if not tensors:
            raise ValueError("ImageList.from_tensors needs at least one image")
        image_sizes = [(int(t.shape[-2]), int(t.shape[-1])) for t in tensors]
        max_h = max(s[0] for s in image_sizes)
        max_w = max(s[1] for s in image_sizes)
        if size_divisibility > 1:
            d = size_divisibility
            max_h = (max_h + d - 1) // d * d
            max_w = (max_w + d - 1) // d * d
        if len(tensors) == 1:
            h, w = image_sizes[0]
            padded = F.pad(tensors[0], [0, max_w - w, 0, max_h - h], value=pad_value)[None]
            return ImageList(padded.contiguous(), image_sizes)
        shape = (len(tensors), *tensors[0].shape[:-2], max_h, max_w)
        batched = tensors[0].new_full(shape, pad_value)
        for img, pad_img in zip(tensors, batched):
            pad_img[..., : img.shape[-2], : img.shape[-1]].copy_(img)
        return ImageList(batched, image_sizes)
