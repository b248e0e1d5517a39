"""DatasetMapper: one dataset dict -> the model's input dict (image tensor + ground truth)."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np
import pycocotools.mask as mask_util
import torch

from rcnnzoo.structures import BitMasks, Boxes, BoxMode, Instances

from .transforms import Augmentation, Transform, TransformList, apply_augmentations

__all__ = ["DatasetMapper", "read_image", "SUPPORTED_IMAGE_FORMATS"]

logger = logging.getLogger(__name__)

SUPPORTED_IMAGE_FORMATS = ("BGR", "RGB", "L")


def read_image(path: str | os.PathLike, format: str = "BGR") -> np.ndarray:
    """Read an image file into np.ndarray[H, W, C] uint8.

    Args:
        path: image file (EXIF orientation is applied by OpenCV).
        format: "BGR", "RGB" (C = 3) or "L" (grayscale, C = 1).

    Raises:
        FileNotFoundError: if ``path`` does not exist; OSError if it cannot be decoded.
    """
    if format not in SUPPORTED_IMAGE_FORMATS:
        raise ValueError(f"Unsupported image format {format!r}; use one of {SUPPORTED_IMAGE_FORMATS}")
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Image file not found: {os.path.abspath(path)}")
    flag = cv2.IMREAD_GRAYSCALE if format == "L" else cv2.IMREAD_COLOR
    image = cv2.imread(path, flag)
    if image is None:
        raise OSError(f"Could not read image {os.path.abspath(path)} (unsupported or corrupt file)")
    if format == "L":
        return image[:, :, None]
    if format == "RGB":
        image = image[:, :, ::-1]
    return np.ascontiguousarray(image)


def _boxes_xyxy(annos: list[dict]) -> np.ndarray:
    """np.ndarray[N, 4] float64: the annotations' boxes converted to absolute XYXY."""
    boxes = np.asarray([a["bbox"] for a in annos], dtype=np.float64).reshape(-1, 4)
    modes = np.asarray([int(a["bbox_mode"]) for a in annos], dtype=np.int64)
    for mode in np.unique(modes):
        rows = modes == mode
        boxes[rows] = BoxMode.convert(boxes[rows], BoxMode(int(mode)), BoxMode.XYXY_ABS)
    return boxes


def _transformed_boxes(boxes: np.ndarray, tfms: TransformList, image_size: tuple[int, int]) -> Boxes:
    """Boxes np.ndarray[N, 4] XYXY of the original image -> float32 :class:`Boxes` of the augmented
    image (of ``image_size``), clipped to it. Ground truth and proposals both go through here."""
    boxes = Boxes(torch.as_tensor(tfms.apply_box(boxes), dtype=torch.float32).reshape(-1, 4))
    boxes.clip(image_size)
    return boxes


def _segmentation_to_mask(
    seg: Any, height: int, width: int, tfms: TransformList, out_hw: tuple[int, int]
) -> np.ndarray:
    """Rasterize a COCO segmentation (polygons or RLE) after ``tfms``: bool[out_h, out_w]."""
    if isinstance(seg, list):  # polygons follow the transform as coordinates, then are rasterized
        polys = [np.asarray(p, dtype=np.float64).reshape(-1, 2) for p in seg]
        polys = tfms.apply_polygons(polys)
        rles = mask_util.frPyObjects([p.reshape(-1).tolist() for p in polys], *out_hw)
        return mask_util.decode(mask_util.merge(rles)).astype(bool)
    if isinstance(seg, dict):  # RLE: decode at the original size, then transform the mask
        rle = mask_util.frPyObjects(seg, height, width) if isinstance(seg["counts"], list) else seg
        if isinstance(rle["counts"], str):
            rle = {"size": rle["size"], "counts": rle["counts"].encode("ascii")}
        mask = tfms.apply_segmentation(mask_util.decode(rle))
        return np.ascontiguousarray(mask).astype(bool)
    raise TypeError(f"Unknown segmentation type {type(seg)}; expected polygons (list) or RLE (dict)")


class DatasetMapper:
    """Read an image, augment it, and turn its annotations into :class:`Instances`.

    Args:
        is_train: if True, the output has ``instances`` built from ``annotations``.
        augmentations: :class:`Augmentation` s or fixed :class:`Transform` s, applied in order.
        image_format: channel order of the output image, "BGR", "RGB" or "L"; must match the
            model's ``input_format``.
        use_instance_mask: also produce ``instances.gt_masks`` (:class:`BitMasks`, full-image masks
            aligned with the augmented image) from the annotations' ``segmentation`` (polygons or RLE).
        proposal_topk: for dataset dicts with precomputed proposals (``proposal_boxes``, see
            :mod:`rcnnzoo.data.proposals`), keep at most this many per image, the best scoring
            (None: all).

    ``__call__(dataset_dict)`` returns a new dict (the input is not modified):

    * ``image``: uint8 Tensor[C, H, W] in ``image_format``, after augmentation;
    * ``height``, ``width``: the ORIGINAL image size (detections are rescaled to it);
    * ``file_name``, ``image_id``;
    * in training, ``instances``: ``Instances(image_size=(H, W))`` with ``gt_boxes``
      (:class:`Boxes`, XYXY absolute float32, transformed and clipped to the image) and
      ``gt_classes`` (int64 Tensor[N]). Crowd annotations and boxes left empty are dropped;
    * when the dataset dict has ``proposal_boxes`` (in training and inference), ``proposals``:
      ``Instances(image_size=(H, W))`` with ``proposal_boxes`` (:class:`Boxes`, transformed and
      clipped exactly like the ground truth; those left empty are dropped) and
      ``objectness_logits`` (float32 Tensor[P]), best first.
    """

    def __init__(
        self,
        *,
        is_train: bool,
        augmentations: Sequence[Augmentation | Transform],
        image_format: str = "BGR",
        use_instance_mask: bool = False,
        proposal_topk: int | None = None,
    ):
        if image_format not in SUPPORTED_IMAGE_FORMATS:
            raise ValueError(
                f"Unsupported image_format {image_format!r}; use one of {SUPPORTED_IMAGE_FORMATS}"
            )
        self.is_train = is_train
        self.augmentations = list(augmentations)
        self.image_format = image_format
        self.use_instance_mask = use_instance_mask
        self.proposal_topk = proposal_topk
        mode = "training" if is_train else "inference"
        logger.info("DatasetMapper for %s, augmentations: %s", mode, self.augmentations)

    def __call__(self, dataset_dict: dict) -> dict:
        file_name = dataset_dict["file_name"]
        image = read_image(file_name, self.image_format)
        orig_h, orig_w = image.shape[:2]
        height, width = dataset_dict.get("height", orig_h), dataset_dict.get("width", orig_w)
        if (height, width) != (orig_h, orig_w):
            raise ValueError(
                f"Image {file_name} is {orig_w}x{orig_h} (WxH) but its dataset dict says {width}x{height}; "
                "the annotations do not match the file"
            )
        image, tfms = apply_augmentations(self.augmentations, image)
        out = {
            "file_name": file_name,
            "image_id": dataset_dict.get("image_id"),
            "height": height,
            "width": width,
            "image": torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))),
        }
        if self.is_train:
            out["instances"] = self._instances(dataset_dict, tfms, (orig_h, orig_w), image.shape[:2])
        if "proposal_boxes" in dataset_dict:
            out["proposals"] = self._proposals(dataset_dict, tfms, image.shape[:2])
        return out

    def _proposals(self, dataset_dict: dict, tfms: TransformList, image_size: tuple[int, int]) -> Instances:
        """The dataset dict's precomputed proposals, transformed with the image; best ``proposal_topk``."""
        boxes = np.asarray(dataset_dict["proposal_boxes"], dtype=np.float64).reshape(-1, 4)
        mode = BoxMode(int(dataset_dict.get("proposal_bbox_mode", BoxMode.XYXY_ABS)))
        boxes = BoxMode.convert(boxes, mode, BoxMode.XYXY_ABS)
        logits = torch.as_tensor(np.asarray(dataset_dict["proposal_objectness_logits"]), dtype=torch.float32)
        order = torch.sort(logits, descending=True, stable=True).indices
        boxes = _transformed_boxes(boxes[order.numpy()], tfms, image_size)
        keep = boxes.nonempty()
        proposals = Instances(image_size, proposal_boxes=boxes[keep], objectness_logits=logits[order][keep])
        return proposals[: self.proposal_topk] if self.proposal_topk is not None else proposals

    def _instances(
        self, dataset_dict: dict, tfms: TransformList, orig_size: tuple[int, int], image_size: tuple[int, int]
    ) -> Instances:
        annos = [a for a in dataset_dict.get("annotations", []) if not a.get("iscrowd", 0)]
        boxes = _transformed_boxes(_boxes_xyxy(annos), tfms, image_size)
        classes = torch.as_tensor([a["category_id"] for a in annos], dtype=torch.int64)
        keep = boxes.nonempty()
        instances = Instances(image_size, gt_boxes=boxes[keep], gt_classes=classes[keep])
        if self.use_instance_mask:
            instances.gt_masks = BitMasks(self._masks(dataset_dict, annos, tfms, orig_size, image_size)[keep])
        return instances

    @staticmethod
    def _masks(
        dataset_dict: dict,
        annos: list[dict],
        tfms: TransformList,
        orig_size: tuple[int, int],
        image_size: tuple[int, int],
    ) -> torch.Tensor:
        """bool Tensor[N, H, W]: the annotations' masks after the transforms."""
        masks = []
        for a in annos:
            if "segmentation" not in a:
                raise KeyError(
                    f"use_instance_mask=True but annotation id={a.get('id')} of {dataset_dict['file_name']} "
                    "has no 'segmentation'"
                )
            masks.append(_segmentation_to_mask(a["segmentation"], *orig_size, tfms, image_size))
        if not masks:
            return torch.zeros((0, *image_size), dtype=torch.bool)
        return torch.from_numpy(np.stack(masks))
