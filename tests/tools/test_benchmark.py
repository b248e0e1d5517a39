"""tools/benchmark.py: runs both models on the same inputs and reports consistent figures."""

from __future__ import annotations

import json

import torch

from rcnnzoo.tools import benchmark


def test_make_inputs_is_deterministic_and_valid():
    a = benchmark.make_inputs(2, 64, 96, num_classes=3, seed=1)
    b = benchmark.make_inputs(2, 64, 96, num_classes=3, seed=1)
    assert torch.equal(a[1]["image"], b[1]["image"])
    boxes = a[0]["instances"].gt_boxes.tensor
    assert (boxes[:, 2:] > boxes[:, :2]).all()
    assert (boxes[:, 2] <= 95).all() and (boxes[:, 3] <= 63).all()
    assert int(a[0]["instances"].gt_classes.max()) < 3


def test_time_fn_counts_only_timed_calls():
    calls = []
    seconds = benchmark.time_fn(lambda: calls.append(1), iters=4, warmup=2, device=torch.device("cpu"))
    assert len(calls) == 6 and seconds >= 0


def test_benchmark_beside_torchvision_writes_json(tmp_path):
    out = tmp_path / "bench.json"
    report = benchmark.main(
        [
            "--config-file=Shapes/faster_rcnn_tiny_fpn.py",
            "--torchvision=fasterrcnn_mobilenet_v3_large_fpn",
            "--image-size",
            "128",
            "160",
            "--iters=1",
            "--warmup=1",
            "--train-batch-sizes=2",
            "--inference-batch-sizes=1",
            "--score-thresh=0",
            f"--json={out}",
        ]
    )
    saved = json.loads(out.read_text())
    assert saved["results"] == json.loads(json.dumps(report["results"]))
    train, infer = saved["results"]
    assert train["task"] == "train" and train["rcnnzoo_images_per_s"] > 0 and train["torchvision_images_per_s"] > 0
    assert train["speedup"] == train["rcnnzoo_images_per_s"] / train["torchvision_images_per_s"]
    assert infer["task"] == "inference" and infer["rcnnzoo_ms_per_image"] > 0
    assert infer["speedup"] == infer["torchvision_ms_per_image"] / infer["rcnnzoo_ms_per_image"]
    assert 0 < infer["rcnnzoo_backbone_ms_per_image"]


def test_mask_inputs_lie_inside_their_boxes():
    (item,) = benchmark.make_inputs(1, 64, 80, num_classes=2, boxes_per_image=3, with_masks=True)
    inst = item["instances"]
    masks = inst.gt_masks.tensor
    assert masks.shape == (3, 64, 80) and masks.any(dim=(1, 2)).all()
    for mask, box in zip(masks, inst.gt_boxes.tensor):
        ys, xs = mask.nonzero(as_tuple=True)
        assert xs.min() >= box[0] - 1 and xs.max() <= box[2] and ys.min() >= box[1] - 1 and ys.max() <= box[3]


def test_mask_rcnn_benchmark_trains_both_models_with_masks():
    report = benchmark.main(
        [
            "--config-file=Shapes/mask_rcnn_tiny_fpn.py",
            "--torchvision=maskrcnn_resnet50_fpn",
            "--task=train",
            "--image-size",
            "96",
            "128",
            "--iters=1",
            "--warmup=1",
            "--train-batch-sizes=1",
        ]
    )
    (row,) = report["results"]
    assert row["rcnnzoo_images_per_s"] > 0 and row["torchvision_images_per_s"] > 0


def test_torchvision_model_gets_our_frozen_backbone_and_proposal_counts():
    from rcnnzoo.config import LazyConfig, resolve_config_path
    from rcnnzoo.layers import FrozenBatchNorm2d

    cfg = LazyConfig.load(resolve_config_path("COCO-Detection/faster_rcnn_R_50_FPN_1x.py"))
    settings = benchmark.torchvision_settings(cfg)
    assert settings["rpn_pre_nms_top_n_train"] == 2000 and settings["rpn_post_nms_top_n_train"] == 1000
    assert settings["box_batch_size_per_image"] == 512
    tv = benchmark.build_torchvision_model("fasterrcnn_resnet50_fpn", 80, 64, 96, None, settings)
    tv = benchmark.match_backbone_training(tv, frozen_bn=True, freeze_at=2)
    body = tv.backbone.body
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in body.modules())
    assert any(isinstance(m, FrozenBatchNorm2d) for m in body.modules())
    assert not any(p.requires_grad for p in body.layer1.parameters())
    assert all(p.requires_grad for p in body.layer2.parameters())
    assert tv.rpn._post_nms_top_n["training"] == 1000
