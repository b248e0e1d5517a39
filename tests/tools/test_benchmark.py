"""tools/benchmark.py: runs both models on the same inputs and reports consistent figures."""

from __future__ import annotations

import json

import pytest
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


def test_both_models_get_the_same_weights_and_our_inference_copy_is_optimized():
    arch = "fasterrcnn_mobilenet_v3_large_fpn"
    cfg = benchmark.load_config("COCO-Detection/torchvision/" + arch + ".py", score_thresh=0.0)
    tv = benchmark.build_counterpart(cfg, arch, 128, 160, 0.0)
    ours = benchmark.build_ours(cfg, torch.device("cpu"))
    assert benchmark.share_weights(ours, tv, arch)
    from rcnnzoo.model_zoo.converters import convert_torchvision_state_dict

    state = ours.state_dict()
    for key, value in convert_torchvision_state_dict(tv.state_dict(), arch).items():
        assert torch.equal(state[key], value), key
    shapes = benchmark.build_ours(benchmark.load_config("Shapes/faster_rcnn_tiny_fpn.py"), torch.device("cpu"))
    assert not benchmark.share_weights(shapes, tv, arch)  # another architecture: each keeps its own

    from rcnnzoo.modeling.inference_optimization import is_optimized_for_inference

    assert benchmark.inference_model(ours, optimize=False) is ours
    copy = benchmark.inference_model(ours, optimize=True)
    assert copy is not ours and is_optimized_for_inference(copy) and not is_optimized_for_inference(ours)


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


def test_suite_reports_every_target_row_and_runs_the_selected_ones(tmp_path, capsys):
    from rcnnzoo.tools.benchmark_suite import suite_targets

    out = tmp_path / "suite.json"
    report = benchmark.main(
        [
            "--suite=targets",
            "--device=cpu",  # the GPU rows are skipped even where CUDA is there
            "--image-size",
            "64",
            "96",
            "--iters=1",
            "--warmup=0",
            "--suite-only",
            "cpu_inference_r50",
            "gpu_train",
            f"--json={out}",
        ]
    )
    saved = json.loads(out.read_text())
    assert saved == json.loads(json.dumps(report))
    rows = {row["id"]: row for row in saved["rows"]}
    # every target of issue #7, in every setting it names
    dtypes = ("fp32", "bf16")
    expected = {
        f"gpu_{what}_{model}_b8_{dtype}"
        for what in ("train", "memory")
        for model in ("faster_rcnn_r50", "mask_rcnn_r50")
        for dtype in dtypes
    }
    expected |= {
        f"gpu_inference_vs_{ref}_b{batch}_{dtype}"
        for ref in ("torchvision", "backbone")
        for batch in (1, 8)
        for dtype in dtypes
    }
    expected |= {"cpu_inference_r50", "cpu_inference_mobilenet_v3", "cpu_train_shapes_tiny"}
    assert set(rows) == expected and [row["id"] for row in saved["rows"]] == [t.id for t in suite_targets()]
    for row in rows.values():
        if row["id"] != "cpu_inference_r50":
            assert row["status"] == "skipped" and row["reason"]
            assert row["ours"] is None and row["ratio"] is None and row["met"] is None
    assert all(rows[i]["reason"].startswith("no CUDA device") for i in rows if i.startswith("gpu_train"))
    assert rows["gpu_memory_mask_rcnn_r50_b8_bf16"]["reason"] == "not selected (--suite-only)"
    assert rows["gpu_train_faster_rcnn_r50_b8_bf16"]["bar"] == 1.5
    assert rows["gpu_train_mask_rcnn_r50_b8_fp32"]["bar"] == 3

    r50 = rows["cpu_inference_r50"]
    assert r50["status"] == "measured" and r50["image_size"] == [64, 96] and r50["unit"] == "ms/image"
    assert r50["ours"] > 0 and r50["reference"] > 0
    # a speedup: torchvision's time over ours
    assert r50["ratio"] == pytest.approx(r50["reference"] / r50["ours"])
    assert r50["met"] == (r50["ratio"] >= 1.5)
    assert saved["cpu_threads"] == 2 and saved["machine"]["gpu"] is None
    table = capsys.readouterr().out
    assert "| cpu_inference_r50 | CPU inference speed vs torchvision |" in table
    assert "skipped: no CUDA device" in table


def test_suite_ratios_point_the_same_way_in_every_kind_of_row():
    from rcnnzoo.tools.benchmark_suite import Measurement, suite_targets, target_row

    targets = {t.id: t for t in suite_targets()}

    def row(target_id: str, **measured: Measurement) -> dict:
        target = targets[target_id]
        found = {(who, target.setting): m for who, m in measured.items()}
        return target_row(target, None, found, (800, 1216))

    # batch 8: ours 0.5 s per step and 1 GiB at peak, torchvision 1 s and 2 GiB
    ours, theirs = Measurement(0.5, 1024.0), Measurement(1.0, 2048.0)
    train = row("gpu_train_faster_rcnn_r50_b8_bf16", rcnnzoo=ours, torchvision=theirs)
    assert (train["unit"], train["ours"], train["reference"]) == ("images/s", 16, 8)
    assert train["ratio"] == 2 and train["met"] is True
    mask = row("gpu_train_mask_rcnn_r50_b8_bf16", rcnnzoo=ours, torchvision=theirs)
    assert mask["ratio"] == 2 and mask["met"] is False  # the Mask R-CNN bar is 3x
    memory = row("gpu_memory_faster_rcnn_r50_b8_bf16", rcnnzoo=ours, torchvision=theirs)
    assert (memory["unit"], memory["ours"], memory["reference"], memory["ratio"]) == ("MiB", 1024, 2048, 0.5)
    assert memory["met"] is True and memory["bar_op"] == "<="

    ours, theirs = Measurement(0.8), Measurement(2.0)
    infer = row("gpu_inference_vs_torchvision_b8_fp32", rcnnzoo=ours, torchvision=theirs)
    assert infer["unit"] == "ms/image"
    assert infer["ours"] == pytest.approx(100) and infer["reference"] == pytest.approx(250)
    assert infer["ratio"] == pytest.approx(2.5) and infer["met"] is False
    latency = row("gpu_inference_vs_backbone_b1_fp32", rcnnzoo=Measurement(0.03), backbone=Measurement(0.02))
    assert latency["ratio"] == pytest.approx(1.5) and latency["met"] is True
    assert latency["reference"] == pytest.approx(20) and latency["reference_is"] == "rcnnzoo backbone alone"

    out_of_memory = Measurement(error="OutOfMemoryError: x")
    failed = row("gpu_train_faster_rcnn_r50_b8_fp32", rcnnzoo=out_of_memory, torchvision=theirs)
    assert failed["status"] == "failed" and failed["met"] is None
    assert "rcnnzoo: OutOfMemoryError" in failed["reason"]


def test_suite_refuses_a_config():
    with pytest.raises(SystemExit):
        benchmark.main(["--suite=targets", "--config-file=Shapes/faster_rcnn_tiny_fpn.py"])


def test_suite_reports_a_missing_config_as_skipped(monkeypatch):
    from rcnnzoo.tools import benchmark_suite

    missing = ("Faster R-CNN X", "COCO-Detection/torchvision/no_such_config.py", "fasterrcnn_resnet50_fpn")
    monkeypatch.setattr(benchmark_suite, "MOBILENET_V3", missing)
    report = benchmark.main(["--suite=targets", "--device=cpu", "--suite-only=cpu_inference_mobilenet_v3"])
    (row,) = [row for row in report["rows"] if row["id"] == "cpu_inference_mobilenet_v3"]
    assert row["status"] == "skipped" and row["reason"] == f"config not found: {missing[1]}"
