"""Proposal files: write, load, attach to dataset dicts; the mapper moves proposals like the ground truth."""

from __future__ import annotations

import os
import uuid

import cv2
import numpy as np
import pytest
import torch

from rcnnzoo.data import (
    DatasetCatalog,
    DatasetMapper,
    MetadataCatalog,
    RandomFlip,
    ResizeShortestEdge,
    attach_proposals,
    get_detection_dataset_dicts,
    load_proposals,
    save_proposals,
)
from rcnnzoo.structures import BoxMode


def _random_proposals(
    rng: np.random.Generator, counts: list[int]
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    boxes, scores = [], []
    for n in counts:
        xy = rng.uniform(0, 50, (n, 2))
        boxes.append(np.concatenate([xy, xy + rng.uniform(1, 30, (n, 2))], axis=1).astype(np.float32))
        scores.append(rng.normal(size=n).astype(np.float32))
    return boxes, scores


@pytest.mark.parametrize("ids", [[3, 1, 7], ["000005", "a", "b"]])
def test_round_trip(tmp_path, ids):
    boxes, scores = _random_proposals(np.random.default_rng(0), [4, 0, 2])
    path = tmp_path / "sub" / "props.npz"
    save_proposals(path, ids, boxes, scores)
    assert sorted(os.listdir(path.parent)) == ["props.npz"]  # written in place, no temp file left

    with np.load(path, allow_pickle=False) as raw:  # plain arrays, no pickled objects
        assert sorted(raw.files) == ["boxes", "ids", "offsets", "scores"]
        assert raw["boxes"].dtype == np.float32 and raw["boxes"].shape == (6, 4)
        assert raw["offsets"].dtype == np.int64 and raw["offsets"].tolist() == [0, 4, 4, 6]

    loaded = load_proposals(path)
    assert [str(i) for i in loaded.ids] == [str(i) for i in ids]
    for k in range(3):
        b, s = loaded.proposals_of(k)
        np.testing.assert_array_equal(b, boxes[k])
        np.testing.assert_array_equal(s, scores[k])


def test_repeated_ids_and_mismatched_lengths_are_refused(tmp_path):
    boxes, scores = _random_proposals(np.random.default_rng(0), [1, 1])
    with pytest.raises(ValueError, match="repeated"):
        save_proposals(tmp_path / "p.npz", [1, 1], boxes, scores)
    with pytest.raises(ValueError, match="2 box arrays"):
        save_proposals(tmp_path / "p.npz", [1, 2, 3], boxes, scores)
    assert not (tmp_path / "p.npz").exists()


def test_loading_something_else_names_the_file(tmp_path):
    other = tmp_path / "other.npz"
    np.savez(other, boxes=np.zeros((1, 4), np.float32))
    with pytest.raises(ValueError, match=r"other\.npz.*lacks \['ids', 'scores', 'offsets'\]"):
        load_proposals(other)
    bad = tmp_path / "bad.npz"
    np.savez(bad, ids=np.arange(2), boxes=np.zeros((3, 4), np.float32), scores=np.zeros(3), offsets=[0, 1, 2])
    with pytest.raises(ValueError, match=r"bad\.npz.*offsets"):
        load_proposals(bad)
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="garbage"):
        load_proposals(garbage)
    with pytest.raises(FileNotFoundError):
        load_proposals(tmp_path / "missing.npz")


def test_attach_and_missing_ids_are_named(tmp_path):
    boxes, scores = _random_proposals(np.random.default_rng(1), [2, 3, 1])
    path = tmp_path / "props.npz"
    save_proposals(path, [10, 11, 12], boxes, scores)
    dicts = [{"image_id": 12, "file_name": "c.png"}, {"image_id": 10, "file_name": "a.png"}]

    attached = attach_proposals(dicts, str(path))
    assert "proposal_boxes" not in dicts[0]  # copies; the input is untouched
    np.testing.assert_array_equal(attached[0]["proposal_boxes"], boxes[2])
    np.testing.assert_array_equal(attached[1]["proposal_objectness_logits"], scores[0])
    assert attached[1]["proposal_bbox_mode"] == BoxMode.XYXY_ABS

    wider = dicts + [{"image_id": i} for i in (40, 41, 42, 43, 44, 45)]
    with pytest.raises(ValueError) as err:
        attach_proposals(wider, path, dataset_name="toy")
    message = str(err.value)
    assert str(path) in message and "6 of the 8 images" in message and "'toy'" in message
    assert "[40, 41, 42, 43, 44]" in message and "45" not in message  # the first few


@pytest.fixture
def toy_dataset():
    """A registered 3-image dataset (one without objects); removed afterwards."""
    name = f"test_proposals_{uuid.uuid4().hex[:8]}"
    dicts = [
        {
            "file_name": f"{i}.png",
            "image_id": i,
            "height": 50,
            "width": 60,
            "annotations": [
                {"bbox": [5, 5, 20, 20], "bbox_mode": BoxMode.XYWH_ABS, "category_id": 0, "iscrowd": 0}
            ]
            if i != 2
            else [],
        }
        for i in (1, 2, 3)
    ]
    DatasetCatalog.register(name, lambda: [dict(d) for d in dicts])
    MetadataCatalog.get(name).set(thing_classes=["thing"])
    yield name
    DatasetCatalog.remove(name)
    MetadataCatalog.remove(name)


def test_get_detection_dataset_dicts_attaches_before_filtering(tmp_path, toy_dataset):
    boxes, scores = _random_proposals(np.random.default_rng(2), [3, 4, 5])
    path = tmp_path / "props.npz"
    save_proposals(path, [1, 2, 3], boxes, scores)
    dicts = get_detection_dataset_dicts(toy_dataset, filter_empty=True, proposal_files=[str(path)])
    assert [d["image_id"] for d in dicts] == [1, 3]
    assert [len(d["proposal_boxes"]) for d in dicts] == [3, 5]

    partial = tmp_path / "partial.npz"
    save_proposals(partial, [1, 3], boxes[:2], scores[:2])
    # the image without objects is still a dataset image: filter_empty does not excuse its absence
    with pytest.raises(ValueError, match=r"partial\.npz.*first missing image ids: \[2\]"):
        get_detection_dataset_dicts(toy_dataset, filter_empty=True, proposal_files=[str(partial)])
    with pytest.raises(ValueError, match="one file per dataset"):
        get_detection_dataset_dicts(toy_dataset, proposal_files=[str(path), str(path)])


@pytest.fixture
def image_dict(tmp_path) -> dict:
    path = str(tmp_path / "img.png")
    cv2.imwrite(path, np.full((40, 60, 3), 128, np.uint8))
    gt = np.array([[5, 10, 15, 20], [30, 0, 70, 30], [50, 35, 59, 39], [61, 0, 70, 10]], np.float64)  # XYXY
    return {
        "file_name": path,
        "image_id": 1,
        "height": 40,
        "width": 60,
        "annotations": [
            {"bbox": b.tolist(), "bbox_mode": BoxMode.XYXY_ABS, "category_id": 0, "iscrowd": 0} for b in gt
        ],
        # the same boxes as proposals, XYWH this time, best first
        "proposal_boxes": BoxMode.convert(gt, BoxMode.XYXY_ABS, BoxMode.XYWH_ABS).astype(np.float32),
        "proposal_objectness_logits": np.array([4.0, 3.0, 2.0, 1.0], np.float32),
        "proposal_bbox_mode": BoxMode.XYWH_ABS,
    }


@pytest.mark.parametrize("flip", [False, True])
def test_mapper_resizes_and_flips_proposals_exactly_like_the_ground_truth(image_dict, flip):
    augmentations = [ResizeShortestEdge(64, max_size=1000), RandomFlip(prob=1.0 if flip else 0.0)]
    out = DatasetMapper(is_train=True, augmentations=augmentations)(image_dict)
    props, gt = out["proposals"], out["instances"]
    assert props.image_size == gt.image_size == (64, 96) == tuple(out["image"].shape[1:])
    # the box outside the image is dropped from both; the others agree to the bit
    assert len(gt) == 3
    torch.testing.assert_close(props.proposal_boxes.tensor, gt.gt_boxes.tensor, rtol=0, atol=0)
    torch.testing.assert_close(props.objectness_logits, torch.tensor([4.0, 3.0, 2.0]))
    first = props.proposal_boxes.tensor[0].tolist()
    assert first == ([96 - 24.0, 16.0, 96 - 8.0, 32.0] if flip else [8.0, 16.0, 24.0, 32.0])


def test_mapper_keeps_the_best_proposal_topk_in_inference_too(image_dict):
    image_dict["proposal_objectness_logits"] = np.array([1.0, 3.0, 2.0, 4.0], np.float32)
    out = DatasetMapper(is_train=False, augmentations=[], proposal_topk=2)(image_dict)
    assert "instances" not in out
    # the best is outside the image (dropped), then the 2nd and 3rd boxes by score
    torch.testing.assert_close(out["proposals"].objectness_logits, torch.tensor([3.0, 2.0]))
    torch.testing.assert_close(
        out["proposals"].proposal_boxes.tensor, torch.tensor([[30.0, 0, 60, 30], [50, 35, 59, 39]])
    )


def test_mapper_without_proposals_adds_none(image_dict):
    for key in ("proposal_boxes", "proposal_objectness_logits", "proposal_bbox_mode"):
        del image_dict[key]
    assert "proposals" not in DatasetMapper(is_train=True, augmentations=[])(image_dict)


def test_mapper_with_no_proposals_for_an_image(image_dict):
    image_dict["proposal_boxes"] = np.zeros((0, 4), np.float32)
    image_dict["proposal_objectness_logits"] = np.zeros(0, np.float32)
    out = DatasetMapper(is_train=True, augmentations=[ResizeShortestEdge(64)])(image_dict)
    assert len(out["proposals"]) == 0 and out["proposals"].image_size == (64, 96)
