"""The mapper's gt_masks (BitMasks) stay aligned with the image and the boxes through resizes and flips."""

from __future__ import annotations

import cv2
import numpy as np
import pycocotools.mask as mask_util
import pytest
import torch

from rcnnzoo.data import DatasetMapper, RandomFlip, ResizeShortestEdge
from rcnnzoo.structures import BitMasks, BoxMode, pairwise_iou

H, W = 40, 60
RED, GREEN = (0, 0, 255), (0, 255, 0)  # BGR


@pytest.fixture
def painted(tmp_path):
    """An image whose objects are painted in flat colours exactly where their masks are."""
    image = np.zeros((H, W, 3), np.uint8)
    image[10:20, 5:15] = RED  # given as RLE
    image[4:30, 30:52] = GREEN  # given as a polygon
    path = str(tmp_path / "img.png")
    cv2.imwrite(path, image)
    square = np.zeros((H, W), np.uint8)
    square[10:20, 5:15] = 1
    rle = mask_util.encode(np.asfortranarray(square))
    rle["counts"] = rle["counts"].decode()
    return {
        "file_name": path,
        "image_id": 1,
        "height": H,
        "width": W,
        "annotations": [
            {"bbox": [5, 10, 10, 10], "bbox_mode": BoxMode.XYWH_ABS, "category_id": 0, "segmentation": rle},
            {"bbox": [30, 4, 52, 30], "bbox_mode": BoxMode.XYXY_ABS, "category_id": 1,
             "segmentation": [[30, 4, 52, 4, 52, 30, 30, 30]]},
        ],
    }  # fmt: skip


@pytest.mark.parametrize("flip", [False, True])
@pytest.mark.parametrize("short_edge", [40, 80, 56])  # identity, x2, x1.4 (non-integer scale)
def test_masks_follow_image_and_boxes(painted, flip, short_edge):
    augs = [ResizeShortestEdge(short_edge), RandomFlip(prob=1.0 if flip else 0.0)]
    out = DatasetMapper(is_train=True, augmentations=augs, use_instance_mask=True)(painted)
    inst = out["instances"]
    masks = inst.gt_masks
    h, w = out["image"].shape[1:]
    assert isinstance(masks, BitMasks) and masks.image_size == (h, w) == inst.image_size
    assert masks.tensor.dtype == torch.bool and len(masks) == 2

    # boxes of the masks agree with the transformed boxes
    iou = pairwise_iou(masks.get_bounding_boxes(), inst.gt_boxes).diagonal()
    assert bool((iou > 0.9).all()), iou

    # the masks cover the pixels painted in their object's colour in the augmented image
    image = out["image"].permute(1, 2, 0).numpy().astype(int)
    for k, color in enumerate([RED, GREEN]):
        painted_px = torch.from_numpy(np.abs(image - np.array(color)).sum(axis=2) < 128)  # at least half the colour
        inter = (painted_px & masks.tensor[k]).sum().item()
        union = (painted_px | masks.tensor[k]).sum().item()
        assert inter / union > 0.9, (k, inter / union)

    if flip:  # mirrored: the red square is now on the right half
        assert masks.get_bounding_boxes().tensor[0, 0] > w / 2
