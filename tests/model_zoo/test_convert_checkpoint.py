"""tools/convert_checkpoint.py: a torchvision file in, an rcnnzoo checkpoint the Checkpointer loads out."""

from __future__ import annotations

import pytest
import torch
import torchvision

from rcnnzoo.checkpoint import Checkpointer, CheckpointError
from rcnnzoo.config import instantiate
from rcnnzoo.model_zoo import get_config
from rcnnzoo.tools.convert_checkpoint import main

ARCH = "fasterrcnn_resnet50_fpn"


def test_converts_torchvision_file_to_checkpoint_that_loads_weights_only(tmp_path):
    torch.manual_seed(0)
    tv = torchvision.models.detection.fasterrcnn_resnet50_fpn(
        weights=None, weights_backbone=None, num_classes=91
    )
    src, dst = tmp_path / "tv.pth", tmp_path / "rcnnzoo.pth"
    torch.save(tv.state_dict(), src)

    record = main([str(src), str(dst), "--source", "torchvision", "--arch", ARCH])
    assert record["config"] == "COCO-Detection/torchvision/fasterrcnn_resnet50_fpn.py"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rcnnzoo.pth", "tv.pth"]  # no temporary file left

    model = instantiate(get_config(record["config"]).model)
    report = Checkpointer(model).load(str(dst))  # torch.load(weights_only=True) inside
    assert report.missing_keys == [] and report.unexpected_keys == []
    assert report.extra["conversion"]["arch"] == ARCH
    assert torch.equal(model.backbone.bottom_up.conv1.weight, tv.backbone.body.conv1.weight)
    assert torch.equal(
        model.roi_heads.box_predictor.cls_score.bias[:-1], tv.roi_heads.box_predictor.cls_score.bias[1:]
    )


def test_refuses_a_file_that_is_not_a_state_dict(tmp_path):
    src = tmp_path / "not_weights.pth"
    torch.save({"epoch": 3}, src)
    with pytest.raises(CheckpointError, match="state dict"):
        main([str(src), str(tmp_path / "out.pth"), "--source", "torchvision", "--arch", ARCH, "--no-verify"])
    assert not (tmp_path / "out.pth").exists()
