"""Every config file shipped in configs/ loads, instantiates its model, and agrees with its data."""

from __future__ import annotations

import pytest
import torch

from rcnnzoo.config import LazyConfig, configs_root, instantiate
from rcnnzoo.modeling import GeneralizedRCNN

_ROOT = configs_root()
_CONFIGS = sorted(
    p.relative_to(_ROOT).as_posix()
    for p in _ROOT.rglob("*.py")
    if "common" not in p.relative_to(_ROOT).parts
)

# The configs the spine promises; a rename must be deliberate.
_EXPECTED = {
    "Shapes/faster_rcnn_tiny_fpn.py",
    "COCO-Detection/faster_rcnn_R_50_FPN_1x.py",
    "COCO-Detection/faster_rcnn_R_50_FPN_3x.py",
    "COCO-Detection/faster_rcnn_R_50_C4_1x.py",
    "COCO-Detection/faster_rcnn_vgg16.py",
    "PascalVOC-Detection/faster_rcnn_vgg16.py",
    "PascalVOC-Detection/faster_rcnn_R_50_FPN.py",
}


def test_expected_configs_are_shipped():
    assert _EXPECTED <= set(_CONFIGS)


@pytest.mark.parametrize("name", _CONFIGS)
def test_config_loads_and_builds_its_model(name):
    cfg = LazyConfig.load(_ROOT / name)
    for section in ("model", "dataloader", "optimizer", "lr_multiplier", "train"):
        assert section in cfg, f"{name} has no {section!r} section"
    model = instantiate(cfg.model)
    assert isinstance(model, torch.nn.Module)
    # The data must be decoded in the channel order the model was trained/normalized for.
    for split in ("train", "test"):
        assert cfg.dataloader[split].mapper.image_format == model.input_format, (name, split)
    if isinstance(model, GeneralizedRCNN):
        assert model.roi_heads.num_classes == cfg.model.roi_heads.num_classes
    instantiate(cfg.lr_multiplier)  # the schedule is well-formed (milestones within max_iter)


@pytest.mark.parametrize("name", ["COCO-Detection/faster_rcnn_R_50_FPN_1x.py", "Shapes/faster_rcnn_tiny_fpn.py"])
def test_config_roundtrips_through_yaml(name, tmp_path):
    cfg = LazyConfig.load(_ROOT / name)
    LazyConfig.save(cfg, tmp_path / "config.yaml")
    again = LazyConfig.load(tmp_path / "config.yaml")
    assert again.train.max_iter == cfg.train.max_iter
    assert again.model.roi_heads.num_classes == cfg.model.roi_heads.num_classes
