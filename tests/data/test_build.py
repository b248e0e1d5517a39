import itertools
import logging

import numpy as np
import pytest
import torch
import torch.distributed as dist

from rcnnzoo.data import (
    DatasetCatalog,
    DatasetMapper,
    RandomFlip,
    build_detection_test_loader,
    build_detection_train_loader,
    get_detection_dataset_dicts,
    load_coco_json,
)
from rcnnzoo.structures import BoxMode


def _dict(i, h, w, n_annos=1, crowd=False):
    ann = {"bbox": [0, 0, 2, 2], "bbox_mode": BoxMode.XYWH_ABS, "category_id": 0, "iscrowd": int(crowd)}
    return {"file_name": f"{i}.png", "image_id": i, "height": h, "width": w, "annotations": [ann] * n_annos}


def test_get_detection_dataset_dicts_concatenates_and_filters(catalog_names, caplog):
    catalog_names += ["tmp_a", "tmp_b", "tmp_empty"]
    DatasetCatalog.register("tmp_a", lambda: [_dict(0, 5, 5), _dict(1, 5, 5, n_annos=0)])
    DatasetCatalog.register("tmp_b", lambda: [_dict(2, 5, 5, crowd=True), _dict(3, 5, 5)])
    DatasetCatalog.register("tmp_empty", list)

    with caplog.at_level(logging.INFO, logger="rcnnzoo.data.build"):
        kept = get_detection_dataset_dicts(["tmp_a", "tmp_b"], filter_empty=True)
    assert [d["image_id"] for d in kept] == [0, 3]  # no annotations / only crowd: dropped
    assert "Removed 2 images" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="rcnnzoo.data.build"):
        every = get_detection_dataset_dicts("tmp_a")  # the default keeps them, and says so
    assert [d["image_id"] for d in every] == [0, 1]
    assert "1 without annotations" in caplog.text
    with pytest.raises(ValueError, match="'tmp_empty' is empty"):
        get_detection_dataset_dicts("tmp_empty")
    with pytest.raises(KeyError, match="tmp_c"):
        get_detection_dataset_dicts(["tmp_a", "tmp_c"])


def test_train_loader_batches_are_full_and_grouped_by_orientation():
    # 5 wide and 7 tall images, without a mapper (the dicts pass through)
    dicts = [_dict(i, 10, 20) for i in range(5)] + [_dict(i, 20, 10) for i in range(5, 12)]
    loader = build_detection_train_loader(dataset=dicts, mapper=None, total_batch_size=4, seed=0)
    batches = list(itertools.islice(loader, 30))  # far more than one epoch: it never ends
    assert all(len(b) == 4 for b in batches)
    assert {len({d["width"] > d["height"] for d in b}) for b in batches} == {1}
    seen = {d["image_id"] for b in batches for d in b}
    assert seen == set(range(12))
    mixed = build_detection_train_loader(
        dataset=dicts, mapper=None, total_batch_size=4, aspect_ratio_grouping=False, seed=0
    )
    assert any(len({d["width"] > d["height"] for d in b}) == 2 for b in itertools.islice(mixed, 10))


def test_train_loader_splits_the_batch_over_ranks(monkeypatch):
    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dist, "get_rank", lambda *a, **k: 1)
    monkeypatch.setattr(dist, "get_world_size", lambda *a, **k: 2)
    dicts = [_dict(i, 10, 20) for i in range(6)]
    loader = build_detection_train_loader(dataset=dicts, mapper=None, total_batch_size=4, seed=0)
    assert len(next(iter(loader))) == 2
    with pytest.raises(ValueError, match="multiple of world size"):
        build_detection_train_loader(dataset=dicts, mapper=None, total_batch_size=3)


def _signature(batch):
    return [
        (d["image_id"], d["image"].sum().item(), d["instances"].gt_boxes.tensor.sum().item()) for d in batch
    ]


def test_train_loader_with_workers_is_reproducible_from_seed(small_shapes):
    dicts = load_coco_json(*small_shapes)
    mapper = DatasetMapper(is_train=True, augmentations=[RandomFlip(prob=0.5)])

    def first_batches(seed, num_workers):
        loader = build_detection_train_loader(
            dataset=dicts, mapper=mapper, total_batch_size=2, num_workers=num_workers, seed=seed
        )
        return [_signature(b) for b in itertools.islice(loader, 6)]

    run = first_batches(seed=1, num_workers=2)
    assert run == first_batches(seed=1, num_workers=2)
    assert run != first_batches(seed=2, num_workers=2)
    assert first_batches(seed=1, num_workers=0) == first_batches(seed=1, num_workers=0)
    batch = next(iter(build_detection_train_loader(dataset=dicts, mapper=mapper, total_batch_size=2, seed=1)))
    for d in batch:
        assert d["image"].dtype == torch.uint8 and d["image"].shape[0] == 3
        assert len(d["instances"]) >= 1


def test_test_loader_keeps_dataset_order_and_every_image():
    dicts = [_dict(i, 10, 20 if i % 2 else 5, n_annos=i % 2) for i in range(7)]  # some without annotations
    loader = build_detection_test_loader(dataset=dicts, mapper=None, batch_size=2)
    batches = list(loader)
    assert [len(b) for b in batches] == [2, 2, 2, 1]
    assert [d["image_id"] for b in batches for d in b] == list(range(7))
    assert isinstance(batches[0], list)


def test_test_loader_by_name_with_mapper(small_shapes, catalog_names):
    catalog_names.append("tmp_small_shapes")
    DatasetCatalog.register("tmp_small_shapes", lambda: load_coco_json(*small_shapes))
    mapper = DatasetMapper(is_train=False, augmentations=[])
    out = [d for b in build_detection_test_loader(dataset="tmp_small_shapes", mapper=mapper) for d in b]
    assert [d["image_id"] for d in out] == list(range(1, 21))
    assert all(d["image"].shape[1:] == (d["height"], d["width"]) for d in out)
    assert np.mean([d["image"].float().mean().item() for d in out]) > 0
