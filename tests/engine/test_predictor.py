"""Predictor: batched prediction equals one image at a time; class metadata from checkpoint or catalog."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rcnnzoo.checkpoint import Checkpointer
from rcnnzoo.config import instantiate
from rcnnzoo.data import MetadataCatalog
from rcnnzoo.engine import DefaultPredictor, Predictor, resolve_metadata
from rcnnzoo.model_zoo import get_config

# Original sizes; the first three differ but are resized and padded to the same 64x96 input,
# so they share batches. The other two are alone in their padded size.
SIZES = [(60, 80), (100, 70), (61, 82), (64, 64), (58, 78)]
SAME_PADDED = [0, 2, 4]


def tiny_cfg():
    """The quick-start model on ~64 px inputs, keeping every detection of its random weights."""
    cfg = get_config("Shapes/faster_rcnn_tiny_fpn.py")
    cfg.dataloader.test.mapper.augmentations[0].short_edge_length = 64
    cfg.dataloader.test.mapper.augmentations[0].max_size = 128
    cfg.model.roi_heads.box_predictor.test_score_thresh = 0.0
    cfg.model.roi_heads.box_predictor.test_topk_per_image = 30
    cfg.train.device = "cpu"
    cfg.train.init_checkpoint = ""
    return cfg


def random_images(seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in SIZES]


@pytest.fixture(scope="module")
def predictor() -> Predictor:
    torch.manual_seed(0)
    return Predictor(tiny_cfg(), weights="", batch_size=3)


def record_batches(predictor: Predictor, monkeypatch) -> list[list[tuple[int, ...]]]:
    """Make the model remember the image shapes of every forward pass."""
    batches: list[list[tuple[int, ...]]] = []
    forward = predictor.model.forward

    def recording(inputs):
        batches.append([tuple(x["image"].shape) for x in inputs])
        return forward(inputs)

    monkeypatch.setattr(predictor.model, "forward", recording)
    return batches


def assert_same_detections(a, b) -> None:
    assert a.image_size == b.image_size
    assert len(a) == len(b) > 0
    torch.testing.assert_close(a.pred_boxes.tensor, b.pred_boxes.tensor, atol=1e-3, rtol=1e-5)
    torch.testing.assert_close(a.scores, b.scores, atol=1e-5, rtol=1e-5)
    assert torch.equal(a.pred_classes, b.pred_classes)


def test_batched_prediction_equals_one_at_a_time(predictor, monkeypatch) -> None:
    images = random_images()
    predictor.batch_size = 1
    alone = [predictor(image)["instances"] for image in images]
    predictor.batch_size = 3
    batches = record_batches(predictor, monkeypatch)
    together = predictor(images)

    assert isinstance(together, list) and len(together) == len(images)
    for image, one, out in zip(images, alone, together):
        assert one.image_size == image.shape[:2]  # in the input image's coordinates
        assert_same_detections(one, out["instances"])
    # Images of different sizes did share a forward pass (those with one padded size).
    shared = max(batches, key=len)
    assert len(shared) == 3 and len(set(shared)) > 1
    assert sorted(len(b) for b in batches) == [1, 1, 3]


def test_batches_are_capped_and_keep_input_order(predictor, monkeypatch) -> None:
    images = [random_images(seed=1)[i] for i in SAME_PADDED] * 2  # six images of one padded size
    predictor.batch_size = 4
    batches = record_batches(predictor, monkeypatch)
    outputs = predictor(images)
    assert [len(b) for b in batches] == [4, 2]
    assert [o["instances"].image_size for o in outputs] == [im.shape[:2] for im in images]
    for a, b in zip(outputs[:3], outputs[3:]):  # the same image gives the same detections
        assert_same_detections(a["instances"], b["instances"])


def test_mixed_size_batches_when_not_grouping(predictor, monkeypatch) -> None:
    predictor.batch_size, predictor.group_by_size = 5, False
    try:
        batches = record_batches(predictor, monkeypatch)
        outputs = predictor(random_images())
    finally:
        predictor.batch_size, predictor.group_by_size = 3, True
    assert [len(b) for b in batches] == [5]
    assert [o["instances"].image_size for o in outputs] == list(SIZES)


def test_eval_mode_no_autograd_and_input_checks(predictor) -> None:
    out = predictor(random_images()[0])
    assert isinstance(out, dict) and not predictor.model.training
    assert not out["instances"].scores.requires_grad
    with pytest.raises(ValueError, match="HWC"):
        predictor([np.zeros((8, 8), dtype=np.uint8)])
    with pytest.raises(ValueError, match="batch_size"):
        Predictor(tiny_cfg(), weights="", batch_size=0)


def test_checkpoint_metadata_names_the_classes(tmp_path) -> None:
    torch.manual_seed(0)
    model = instantiate(tiny_cfg().model)
    metadata = {
        "thing_classes": ["ant", "bee", "cat"],
        "thing_dataset_id_to_contiguous_id": {3: 0, 7: 1, 42: 2},
        "dataset_names": ["bugs_train"],
    }
    Checkpointer(model, str(tmp_path)).save("m", metadata=metadata)

    predictor = DefaultPredictor(tiny_cfg(), weights=str(tmp_path / "m.pth"), optimize=False)
    assert isinstance(predictor, Predictor) and predictor.batch_size == 1
    assert predictor.metadata_source == "checkpoint"  # wins over the config's shapes_val names
    assert predictor.thing_classes == ["ant", "bee", "cat"]
    assert predictor.dataset_id_of == {0: 3, 1: 7, 2: 42}
    assert predictor.metadata["dataset_names"] == ["bugs_train"]
    # The weights were loaded, not re-initialized.
    for key, value in model.state_dict().items():
        assert torch.equal(predictor.model.state_dict()[key], value), key
    with pytest.raises(ValueError, match="HWC"):
        predictor(random_images()[:2])  # DefaultPredictor takes one image


def test_metadata_falls_back_to_the_catalog_then_to_indices() -> None:
    cfg = tiny_cfg()  # test dataset: shapes_val, whose class names are set at registration
    meta, source = resolve_metadata(None, cfg)
    assert source == "catalog:shapes_val"
    assert meta["thing_classes"] == list(MetadataCatalog.get("shapes_val").thing_classes)

    name = "test_predictor_classes_known_on_load"
    MetadataCatalog.get(name).set(json_file="x.json")  # like a COCO json dataset not loaded yet
    try:
        cfg.dataloader.test.dataset.names = [name]
        assert resolve_metadata({"note": "no classes"}, cfg) == ({}, "none")
        cfg.dataloader.test.dataset.names = [name, "shapes_val"]
        assert resolve_metadata(None, cfg)[1] == "catalog:shapes_val"
    finally:
        MetadataCatalog.remove(name)

    cfg.dataloader.test.dataset.names = "not_registered_anywhere"
    predictor = Predictor(cfg, weights="")
    assert predictor.thing_classes is None and predictor.metadata_source == "none"
    assert predictor.dataset_id_of[5] == 5  # identity when the dataset's ids are unknown


def test_string_keys_from_a_json_round_trip_become_ints() -> None:
    meta, _ = resolve_metadata({"thing_classes": ["a"], "thing_dataset_id_to_contiguous_id": {"9": 0}}, None)
    assert meta["thing_dataset_id_to_contiguous_id"] == {9: 0}
