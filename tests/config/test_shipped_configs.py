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
    "Shapes/mask_rcnn_tiny_fpn.py",
    "COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_1x.py",
    "COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_3x.py",
    "COCO-InstanceSegmentation/mask_rcnn_R_50_C4_1x.py",
    "Shapes/faster_rcnn_tiny_fpn_alternating.py",
    "Shapes/faster_rcnn_svm_tiny_fpn.py",
    "Classic/selective_search_shapes.py",
    "PascalVOC-Detection/faster_rcnn_vgg16_alternating.py",
    "Classic/fast_rcnn_vgg16_voc.py",
    "Classic/fast_rcnn_R_50_C4_voc.py",
    "Classic/sppnet_vgg16_voc.py",
    "Classic/sppnet_vgg16_svm_voc.py",
    "Classic/rcnn_tiny_shapes.py",
    "Classic/rcnn_vgg16_voc.py",
    "Classic/fast_rcnn_tiny_shapes.py",
    "Classic/sppnet_tiny_shapes.py",
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
        if model.roi_heads.mask_on:  # a mask branch trains on gt_masks and is scored on segm
            assert cfg.dataloader.train.mapper.get("use_instance_mask"), name
            assert "segm" in cfg.dataloader.evaluator.tasks, name
    instantiate(cfg.lr_multiplier)  # the schedule is well-formed (milestones within max_iter)


@pytest.mark.parametrize(
    "name",
    [
        "COCO-Detection/faster_rcnn_R_50_FPN_1x.py",
        "Shapes/faster_rcnn_tiny_fpn.py",
        "COCO-InstanceSegmentation/mask_rcnn_R_50_C4_1x.py",
        "Shapes/mask_rcnn_tiny_fpn.py",
    ],
)
def test_config_roundtrips_through_yaml(name, tmp_path):
    cfg = LazyConfig.load(_ROOT / name)
    LazyConfig.save(cfg, tmp_path / "config.yaml")
    again = LazyConfig.load(tmp_path / "config.yaml")
    assert again.train.max_iter == cfg.train.max_iter
    assert again.model.roi_heads.num_classes == cfg.model.roi_heads.num_classes
    if cfg.model.roi_heads.get("mask_head") is not None:
        head, again_head = cfg.model.roi_heads.mask_head, again.model.roi_heads.mask_head
        assert (again_head.conv_dims, again_head.deconv_dim) == (head.conv_dims, head.deconv_dim)
