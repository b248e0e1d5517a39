"""Fine-tuning across class counts: exactly the predictor layers are re-initialised, any other
shape difference is an error naming the keys; the classes travel inside checkpoints."""

from __future__ import annotations

import logging

import pytest
import torch

from rcnnzoo.checkpoint import (
    Checkpointer,
    CheckpointError,
    ClassMetadata,
    class_dependent_prefixes,
    class_metadata_of,
    read_class_metadata,
)
from rcnnzoo.config import instantiate
from rcnnzoo.data import DatasetCatalog, MetadataCatalog
from rcnnzoo.data.classes import num_classes_of
from rcnnzoo.model_zoo import get_config

PREDICTOR_KEYS = {
    "roi_heads.box_predictor.cls_score.weight",
    "roi_heads.box_predictor.cls_score.bias",
    "roi_heads.box_predictor.bbox_pred.weight",
    "roi_heads.box_predictor.bbox_pred.bias",
}


def _model(config: str, num_classes: int, seed: int, **overrides):
    cfg = get_config(config)
    cfg.model.roi_heads.num_classes = num_classes
    for key, value in overrides.items():
        node = cfg.model
        *parents, last = key.split(".")
        for p in parents:
            node = node[p]
        node[last] = value
    torch.manual_seed(seed)
    return instantiate(cfg.model)


def test_class_dependent_prefixes_name_the_predictors():
    faster = _model("Shapes/faster_rcnn_tiny_fpn.py", 3, 0)
    assert class_dependent_prefixes(faster) == [
        "roi_heads.box_predictor.cls_score.",
        "roi_heads.box_predictor.bbox_pred.",
    ]
    mask = _model("Shapes/mask_rcnn_tiny_fpn.py", 3, 0)
    assert "roi_heads.mask_head.predictor." in class_dependent_prefixes(mask)


def test_finetune_to_another_class_count_reinitialises_exactly_the_predictor(tmp_path, caplog, monkeypatch):
    # a tool run earlier in the session (setup_logger) stops "rcnnzoo" records at its own handlers;
    # caplog listens at the root
    monkeypatch.setattr(logging.getLogger("rcnnzoo"), "propagate", True)
    source = _model("Shapes/faster_rcnn_tiny_fpn.py", 3, seed=0)
    Checkpointer(source, str(tmp_path)).save("source")
    target = _model("Shapes/faster_rcnn_tiny_fpn.py", 2, seed=1)
    fresh = {k: v.clone() for k, v in target.state_dict().items()}

    with caplog.at_level(logging.WARNING, logger="rcnnzoo.checkpoint.checkpointer"):
        report = Checkpointer(target).load(
            str(tmp_path / "source.pth"), allow_shape_mismatch=class_dependent_prefixes(target)
        )
    assert {k for k, _, _ in report.skipped_keys} == PREDICTOR_KEYS
    lines = [r.getMessage() for r in caplog.records if "Re-initialised" in r.getMessage()]
    assert len(lines) == 1 and all(k in lines[0] for k in PREDICTOR_KEYS)

    loaded = target.state_dict()
    for key, value in source.state_dict().items():
        if key in PREDICTOR_KEYS:
            assert torch.equal(loaded[key], fresh[key]), key  # kept the fresh initialization
        else:
            assert torch.equal(loaded[key], value), key  # everything else comes from the source


def test_any_other_shape_difference_is_an_error_naming_the_keys(tmp_path):
    source = _model("Shapes/faster_rcnn_tiny_fpn.py", 3, seed=0)
    Checkpointer(source, str(tmp_path)).save("source")
    wider_head = _model("Shapes/faster_rcnn_tiny_fpn.py", 2, seed=1, **{"roi_heads.box_head.fc_dims": [128, 128]})
    with pytest.raises(CheckpointError) as info:
        Checkpointer(wider_head).load(
            str(tmp_path / "source.pth"), allow_shape_mismatch=class_dependent_prefixes(wider_head)
        )
    message = str(info.value)
    assert "roi_heads.box_head.fcs.0.weight" in message or "roi_heads.box_head" in message
    assert "cls_score" not in message  # the allowed predictor difference is not blamed


def test_classes_travel_in_the_checkpoint(tmp_path):
    name = "finetune_test_ids"
    DatasetCatalog.register(name, lambda: [])
    MetadataCatalog.get(name).set(
        thing_classes=["cat", "dog", "bird"], thing_dataset_id_to_contiguous_id={3: 0, 7: 1, 42: 2}
    )
    try:
        assert num_classes_of(name) == 3
        model = _model("Shapes/faster_rcnn_tiny_fpn.py", 3, seed=0)
        Checkpointer(model, str(tmp_path), metadata=ClassMetadata(class_metadata_of(name))).save("m")
        raw = torch.load(tmp_path / "m.pth", map_location="cpu", weights_only=True)
        meta = read_class_metadata(raw)
        assert meta == {
            "thing_classes": ["cat", "dog", "bird"],
            "thing_dataset_id_to_contiguous_id": {3: 0, 7: 1, 42: 2},
            "dataset_names": [name],
        }
        # a reader without the checkpointable finds it in the load report
        report = Checkpointer(_model("Shapes/faster_rcnn_tiny_fpn.py", 3, seed=1)).load(str(tmp_path / "m.pth"))
        assert read_class_metadata(report.extra)["thing_classes"] == ["cat", "dog", "bird"]
    finally:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
