"""tools/convert_checkpoint.py: a torchvision or detectron2 file in, an rcnnzoo checkpoint the Checkpointer loads out."""

from __future__ import annotations

import logging
import os
import pickle

import pytest
import torch
import torchvision

from rcnnzoo.checkpoint import Checkpointer, CheckpointError, UnsafePickleError
from rcnnzoo.config import instantiate
from rcnnzoo.model_zoo import get_config
from rcnnzoo.tools.convert_checkpoint import main

from .test_detectron2_converter import detectron2_r50_fpn, msra_blobs

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


# ---------------------------------------------------------------------------------- detectron2


def _pkl(path, obj, protocol=pickle.DEFAULT_PROTOCOL):
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=protocol)
    return str(path)


def test_detectron2_pkl_to_checkpoint_that_loads_strictly(tmp_path):
    arch = "mask_rcnn_R_50_FPN_1x"
    sd = detectron2_r50_fpn(masks=True)
    src = _pkl(tmp_path / "model_final_f10217.pkl", {"model": sd, "__author__": "Detectron2 Model Zoo"})
    record = main([src, str(tmp_path / "d2.pth"), "--source", "detectron2", "--arch", arch])
    assert record["config"] == "COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_1x.py"
    assert record["kind"] == "detector"

    model = instantiate(get_config(record["config"]).model)
    report = Checkpointer(model).load(str(tmp_path / "d2.pth"))
    assert report.missing_keys == [] and report.unexpected_keys == []
    assert torch.equal(
        model.roi_heads.mask_head.convs[6].weight,
        torch.from_numpy(sd["roi_heads.mask_head.mask_fcn4.weight"]),
    )


def test_detectron2_pkl_that_runs_code_is_refused_unrun(tmp_path):
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    src = _pkl(tmp_path / "model_final.pkl", {"model": {"w": Payload()}, "__author__": "x"}, protocol=2)
    with pytest.raises(UnsafePickleError, match=r"model_final\.pkl.*system"):
        main([src, str(tmp_path / "out.pth"), "--source", "detectron2", "--arch", "faster_rcnn_R_50_FPN_1x"])
    assert not marker.exists() and not (tmp_path / "out.pth").exists()


def test_msra_imagenet_pkl_is_a_backbone_for_train_init_checkpoint(tmp_path, caplog):
    src = _pkl(tmp_path / "R-50.pkl", msra_blobs(50), protocol=2)
    dst = str(tmp_path / "r50.pth")
    record = main([src, dst, "--source", "detectron2", "--arch", "R-50"])
    assert record["kind"] == "imagenet_backbone" and record["placement"] == {"": "backbone.bottom_up."}
    assert record["expects"]["input_format"] == "BGR" and record["expects"]["stride_in_1x1"] is True

    # what train.init_checkpoint does: the heads are reported as missing (left at their init)
    model = instantiate(get_config("COCO-Detection/faster_rcnn_R_50_FPN_1x.py").model)
    with caplog.at_level(logging.WARNING):
        report = Checkpointer(model).load(dst)
    assert report.unexpected_keys == []
    assert {k.split(".")[0] for k in report.missing_keys} == {"backbone", "proposal_generator", "roi_heads"}
    assert not any(k.startswith("backbone.bottom_up.") for k in report.missing_keys)
    assert "roi_heads.box_predictor.cls_score.weight" in caplog.text

    with pytest.raises(CheckpointError, match="Caffe2 blob dict"):  # an ImageNet file is no detector
        main([src, dst, "--source", "detectron2", "--arch", "faster_rcnn_R_50_FPN_3x"])


def test_torchvision_imagenet_with_config_reports_new_layers_and_input_settings(tmp_path, caplog):
    torch.manual_seed(0)
    src = tmp_path / "resnet50.pth"
    torch.save(torchvision.models.resnet50().state_dict(), src)
    dst = str(tmp_path / "r50.pth")
    config = "COCO-Detection/faster_rcnn_R_50_FPN_1x.py"  # detectron2's recipe: MSRA input settings
    with caplog.at_level(logging.INFO, logger="rcnnzoo.convert_checkpoint"):
        record = main([str(src), dst, "--source", "torchvision", "--arch", "resnet50", "--config", config])
    assert record["config"] == config and record["placement"] == {"": "backbone.bottom_up."}
    assert (
        "newly initialised: backbone.lateral_convs, backbone.output_convs, proposal_generator.head"
        in caplog.text
    )
    assert "model.input_format='RGB'" in caplog.text
    assert "model.backbone.bottom_up.stride_in_1x1=False" in caplog.text

    model = instantiate(get_config(config).model)
    report = Checkpointer(model).load(dst)
    assert report.unexpected_keys == [] and not any(
        k.startswith("backbone.bottom_up.") for k in report.missing_keys
    )


def test_arch_of_another_source_is_a_usage_error(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["in.pkl", "out.pth", "--source", "detectron2", "--arch", "resnet50"])
    assert "is not a detectron2 arch" in capsys.readouterr().err
