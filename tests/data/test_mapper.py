import copy

import cv2
import numpy as np
import pycocotools.mask as mask_util
import pytest
import torch

from rcnnzoo.data import DatasetMapper, RandomFlip, ResizeShortestEdge, read_image
from rcnnzoo.structures import Boxes, BoxMode, Instances

H, W = 40, 60
BGR = (10, 20, 30)


@pytest.fixture
def dataset_dict(tmp_path):
    image = np.empty((H, W, 3), np.uint8)
    image[:] = BGR
    path = str(tmp_path / "img.png")
    cv2.imwrite(path, image)
    square = np.zeros((H, W), np.uint8)
    square[10:20, 5:15] = 1
    rle = mask_util.encode(np.asfortranarray(square))
    rle["counts"] = rle["counts"].decode()
    return {
        "file_name": path,
        "image_id": 7,
        "height": H,
        "width": W,
        "annotations": [
            {"bbox": [5, 10, 10, 10], "bbox_mode": BoxMode.XYWH_ABS, "category_id": 2, "segmentation": rle},
            {"bbox": [30, 0, 70, 30], "bbox_mode": BoxMode.XYXY_ABS, "category_id": 0,  # sticks out: clipped
             "segmentation": [[30, 0, 60, 0, 60, 30, 30, 30]]},
            {"bbox": [0, 0, 60, 40], "bbox_mode": BoxMode.XYXY_ABS, "category_id": 1, "iscrowd": 1},
            {"bbox": [65, 5, 10, 10], "bbox_mode": BoxMode.XYWH_ABS, "category_id": 1,  # outside: empty
             "segmentation": [[65, 5, 75, 5, 75, 15]]},
        ],
    }  # fmt: skip


def test_training_output_contract(dataset_dict):
    original = copy.deepcopy(dataset_dict)
    out = DatasetMapper(is_train=True, augmentations=[])(dataset_dict)
    assert dataset_dict == original  # the input is not modified

    image = out["image"]
    assert image.dtype == torch.uint8 and image.shape == (3, H, W)
    assert image[:, 0, 0].tolist() == list(BGR)
    assert (out["height"], out["width"], out["image_id"], out["file_name"]) == (
        H,
        W,
        7,
        dataset_dict["file_name"],
    )

    inst = out["instances"]
    assert isinstance(inst, Instances) and inst.image_size == (H, W)
    assert isinstance(inst.gt_boxes, Boxes) and inst.gt_boxes.tensor.dtype == torch.float32
    # XYWH converted, the second box clipped to the image, crowd and empty boxes dropped
    assert inst.gt_boxes.tensor.tolist() == [[5, 10, 15, 20], [30, 0, 60, 30]]
    assert inst.gt_classes.dtype == torch.int64 and inst.gt_classes.tolist() == [2, 0]


def test_rgb_format_reverses_channels(dataset_dict):
    out = DatasetMapper(is_train=False, augmentations=[], image_format="RGB")(dataset_dict)
    assert out["image"][:, 5, 5].tolist() == list(BGR[::-1])
    assert "instances" not in out  # inference: no ground truth
    gray = DatasetMapper(is_train=False, augmentations=[], image_format="L")(dataset_dict)["image"]
    assert gray.shape == (1, H, W)


def test_augmentation_changes_image_and_boxes_but_not_original_size(dataset_dict):
    mapper = DatasetMapper(is_train=True, augmentations=[ResizeShortestEdge(80), RandomFlip(prob=1.0)])
    out = mapper(dataset_dict)
    assert out["image"].shape == (3, 80, 120)
    assert (out["height"], out["width"]) == (H, W)  # detections are rescaled to the original size
    assert out["instances"].image_size == (80, 120)
    # scale 2 then flip in a width of 120: [5, 10, 15, 20] -> [10, 20, 30, 40] -> [90, 20, 110, 40]
    assert out["instances"].gt_boxes.tensor.tolist() == [[90, 20, 110, 40], [0, 0, 60, 60]]


def test_masks_follow_the_transforms(dataset_dict):
    mapper = DatasetMapper(is_train=True, augmentations=[RandomFlip(prob=1.0)], use_instance_mask=True)
    masks = mapper(dataset_dict)["instances"].gt_masks
    masks = masks.tensor if hasattr(masks, "tensor") else masks
    assert masks.shape == (2, H, W) and masks.dtype == torch.bool
    expected = np.zeros((H, W), bool)
    expected[10:20, W - 15 : W - 5] = True  # the RLE square, flipped
    assert torch.equal(masks[0], torch.from_numpy(expected))
    ys, xs = torch.nonzero(masks[1], as_tuple=True)  # the polygon, flipped: x in [0, 30)
    assert xs.min() == 0 and xs.max() <= 30 and ys.max() <= 30


def test_missing_or_mismatched_image(dataset_dict, tmp_path):
    mapper = DatasetMapper(is_train=True, augmentations=[])
    with pytest.raises(FileNotFoundError, match="nope.png"):
        mapper({**dataset_dict, "file_name": str(tmp_path / "nope.png")})
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    with pytest.raises(OSError, match="bad.png"):
        read_image(bad)
    with pytest.raises(ValueError, match="dataset dict says"):
        mapper({**dataset_dict, "height": H + 1})


def test_invalid_format():
    with pytest.raises(ValueError, match="image_format"):
        DatasetMapper(is_train=True, augmentations=[], image_format="YUV")
