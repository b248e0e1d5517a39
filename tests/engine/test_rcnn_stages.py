"""R-CNN's post hoc stages (rcnnzoo.engine.rcnn_stages) and the staged run of Classic/rcnn_tiny_shapes.py.

The data is a tiny shapes split (8 training, 4 validation images) with proposal files made here:
jittered ground-truth boxes and random boxes, so that every kind of region (positive, regression
sample, negative) exists without running selective search.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
from engine_toys import captured_log
from torchvision.ops import box_iou

from rcnnzoo.config import LazyConfig, configs_root, instantiate
from rcnnzoo.data import DatasetCatalog, MetadataCatalog, save_proposals
from rcnnzoo.data.datasets.shapes import register_shapes
from rcnnzoo.engine.rcnn_stages import (
    CACHE_FILE,
    CacheOptions,
    FitBoxRegressors,
    TrainSVMs,
    cache_region_features,
    training_images_loader,
)
from rcnnzoo.engine.stages import parse_stages, read_completed, stage_config, stage_iterations
from rcnnzoo.modeling.box_regression import Box2BoxTransform
from rcnnzoo.modeling.poolers import convert_boxes_to_rois
from rcnnzoo.modeling.roi_heads.ridge_box_regression import fit_class_box_regressors, fit_ridge_regression
from rcnnzoo.structures import Boxes, BoxMode, Instances
from rcnnzoo.tools import train_net

CONFIG = "Classic/rcnn_tiny_shapes.py"
STAGES = ["1_finetune", "2_svms", "3_box_regressors"]
NAMES = {"train": "rcnn_stages_test_train", "val": "rcnn_stages_test_val"}


def _proposals_for(dicts: list[dict], seed: int) -> tuple[list, list[np.ndarray], list[np.ndarray]]:
    """Per image: 3 jittered copies of each ground-truth box and 30 random boxes, best first."""
    rng = np.random.default_rng(seed)
    ids, boxes, scores = [], [], []
    for d in dicts:
        h, w = d["height"], d["width"]
        gt = np.array(
            [BoxMode.convert(a["bbox"], a["bbox_mode"], BoxMode.XYXY_ABS) for a in d["annotations"]]
        )
        gt = gt.reshape(-1, 4)
        sizes = np.repeat(gt[:, 2:] - gt[:, :2], 2, axis=1).reshape(-1, 4)
        jittered = np.repeat(gt, 3, axis=0) + rng.normal(0, 0.08, (3 * len(gt), 4)) * np.repeat(
            sizes, 3, axis=0
        )
        xy = rng.uniform(0, 1, (30, 2)) * [w - 20, h - 20]
        random = np.concatenate([xy, xy + rng.uniform(10, 80, (30, 2))], axis=1)
        props = np.concatenate([jittered, random]).clip(0, [w, h, w, h]).astype(np.float32)
        props = props[(props[:, 2:] - props[:, :2] > 1).all(axis=1)]
        ids.append(d["image_id"])
        boxes.append(props)
        scores.append(-np.arange(len(props), dtype=np.float32))
    return ids, boxes, scores


@pytest.fixture(scope="module")
def tiny_shapes(tmp_path_factory) -> dict[str, str]:
    """The two splits registered, and their proposal files: {split: proposal file}."""
    root = tmp_path_factory.mktemp("rcnn_shapes")
    register_shapes(NAMES["train"], "train", 8, seed=11, root=root)
    register_shapes(NAMES["val"], "val", 4, seed=12, root=root)
    files = {}
    for i, (split, name) in enumerate(NAMES.items()):
        files[split] = str(root / f"proposals_{split}.npz")
        save_proposals(files[split], *_proposals_for(DatasetCatalog.get(name), seed=i))
    yield files
    for name in NAMES.values():
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)


def _overrides(files: dict[str, str]) -> list[str]:
    return [
        f"dataloader.train.dataset.names={NAMES['train']}",
        f"dataloader.train.dataset.proposal_files=['{files['train']}']",
        f"dataloader.test.dataset.names={NAMES['val']}",
        f"dataloader.test.dataset.proposal_files=['{files['val']}']",
        f"dataloader.evaluator.dataset_name={NAMES['val']}",
        "dataloader.train.total_batch_size=2",
        "dataloader.train.num_workers=0",
        "dataloader.test.num_workers=0",
    ]


def _config(files: dict[str, str], output_dir: str):
    cfg = LazyConfig.load(configs_root() / CONFIG)
    cfg = LazyConfig.apply_overrides(cfg, _overrides(files))
    cfg.train.output_dir = output_dir
    return cfg


# ------------------------------------------------------------------------------------ box regression


def test_ridge_regression_recovers_a_linear_map_in_both_forms():
    torch.manual_seed(0)
    w_true, b_true = torch.randn(6, 3), torch.randn(3)
    for num in (200, 4):  # more samples than features (normal equations), fewer (the dual)
        x = torch.randn(num, 6, dtype=torch.float64)
        y = x @ w_true.double() + b_true.double()
        w, b = fit_ridge_regression(x, y, lam=1e-6)
        torch.testing.assert_close(x @ w + b, y, atol=1e-4, rtol=0)
        if num > 6:
            torch.testing.assert_close(w, w_true.double(), atol=1e-4, rtol=0)
    # a strong ridge shrinks the weights towards 0 but leaves the bias to fit the mean
    x = torch.randn(100, 6, dtype=torch.float64)
    y = x @ w_true.double() + b_true.double()
    w, b = fit_ridge_regression(x, y, lam=1e9)
    assert w.abs().max() < 1e-4
    torch.testing.assert_close(b, y.mean(dim=0), atol=1e-4, rtol=0)


def test_class_box_regressors_predict_the_deltas_to_the_ground_truth():
    torch.manual_seed(0)
    transform = Box2BoxTransform((10.0, 10.0, 5.0, 5.0))
    proposals = torch.tensor([[10.0, 10.0, 50.0, 40.0]]).repeat(60, 1) + torch.randn(60, 4)
    gt_boxes = proposals + torch.randn(60, 4) * 3
    classes = torch.arange(60) % 2  # class 2 has no sample
    deltas = transform.get_deltas(proposals, gt_boxes)
    # features that hold the deltas linearly, differently for each class, plus noise dimensions
    features = torch.cat([deltas * (1 + classes[:, None]), torch.randn(60, 8) * 0.01], dim=1)
    weights, biases = fit_class_box_regressors(features, proposals, gt_boxes, classes, 3, transform, lam=1e-6)
    predicted = (features @ weights.T + biases).view(60, 3, 4)[torch.arange(60), classes]
    refined = transform.apply_deltas(predicted, proposals)
    assert box_iou(refined, gt_boxes).diag().min() > 0.99
    assert torch.count_nonzero(weights[8:]) == 0 and torch.count_nonzero(biases[8:]) == 0


# ------------------------------------------------------------------------------------ SVMs on a cache


def test_svm_stage_mines_hard_negatives_and_installs_svms_that_rank_objects_first(tiny_shapes, tmp_path):
    cfg = _config(tiny_shapes, str(tmp_path / "2_svms"))
    torch.manual_seed(0)
    model = instantiate(cfg.model)
    initial = model.box_predictor.svm.weight.clone()
    inputs = [{"image": torch.randint(0, 256, (3, 64, 80), dtype=torch.uint8)}]
    inputs[0]["proposals"] = _one_image_proposals()
    model.eval()
    with torch.no_grad():
        before = model.predict_regions(*_regions(model, inputs))[0]

    # C = 1: R-CNN's 0.001 is for hundreds of thousands of regions; here there are a few hundred
    step = TrainSVMs(C=1.0, initial_negatives=20, hard_negative_rounds=2, epochs=30)
    with captured_log("rcnnzoo.modeling.roi_heads.svm_training") as svm_log:
        summary = step(cfg, model)
    assert os.path.isfile(tmp_path / "2_svms" / CACHE_FILE)
    assert sum(summary["positives"]) > 0 and summary["regions"] > 8 * 30
    mined = [int(m.split(": ")[1].split(" hard")[0]) for m in svm_log if "hard negatives added" in m]
    assert mined and max(mined) > 0, svm_log  # the first 20 random negatives were not enough
    assert not torch.equal(model.box_predictor.svm.weight, initial)
    with torch.no_grad():
        after = model.predict_regions(*_regions(model, inputs))[0]
    assert not torch.allclose(after[:, :3], before[:, :3])

    # On the cached training regions, each SVM scores its class's boxes above its negatives.
    cache = torch.load(tmp_path / "2_svms" / CACHE_FILE, weights_only=True)
    margins = cache["features"] @ model.box_predictor.svm.weight.T + model.box_predictor.svm.bias
    for k in range(3):
        positives = cache["labels"] == k
        negatives = (cache["labels"] == 3) & (cache["class_ious"][:, k] < 0.3)
        if positives.any():
            assert margins[positives, k].mean() > margins[negatives, k].mean() + 1.0

    # The box regressors read that cache (same weights), and bring the proposals closer to the objects.
    cfg.train.output_dir = str(tmp_path / "3_box_regressors")
    with captured_log("rcnnzoo.engine.rcnn_stages") as stage_log:
        summary = FitBoxRegressors(features_from="2_svms")(cfg, model)
    assert any("read from" in m and "2_svms" in m for m in stage_log), stage_log
    assert not os.path.exists(tmp_path / "3_box_regressors" / CACHE_FILE)
    samples = cache["reg_features"]
    assert sum(summary["regression_samples"]) == len(samples) > 0
    with torch.no_grad():
        deltas = model.pool5_bbox_pred(samples).view(len(samples), 3, 4)[
            torch.arange(len(samples)), cache["reg_classes"]
        ]
    refined = model.box_predictor.box2box_transform.apply_deltas(deltas, cache["reg_proposals"])
    iou_before = box_iou(cache["reg_proposals"], cache["reg_gt_boxes"]).diag()
    iou_after = box_iou(refined, cache["reg_gt_boxes"]).diag()
    assert iou_after.mean() > iou_before.mean()


def _one_image_proposals() -> Instances:
    boxes = torch.tensor([[4.0, 4.0, 40.0, 30.0], [20.0, 10.0, 70.0, 60.0], [0.0, 0.0, 80.0, 64.0]])
    return Instances((64, 80), proposal_boxes=Boxes(boxes), objectness_logits=torch.zeros(3))


def _regions(model, inputs: list[dict]) -> tuple[torch.Tensor, torch.Tensor]:
    images = model.preprocess_image(inputs)
    return images.tensor, convert_boxes_to_rois([x["proposals"].proposal_boxes for x in inputs])


def test_the_cache_can_keep_fewer_background_proposals_in_half_precision(tiny_shapes, tmp_path):
    cfg = _config(tiny_shapes, str(tmp_path))
    model = instantiate(cfg.model)
    loader, num_images = training_images_loader(cfg, max_images=5)
    full = cache_region_features(model, loader)
    small = cache_region_features(model, loader, CacheOptions(background_per_image=4, dtype="float16"))
    assert num_images == full.num_images == small.num_images == 5
    assert small.features.dtype == torch.float16 and full.features.dtype == torch.float32

    def background(cache):
        return (cache.labels == 3) & (cache.class_ious.max(dim=1).values < 0.3)

    assert int(background(small).sum()) == 4 * 5 < int(background(full).sum())
    # the ground-truth boxes, the proposals near an object and the regression samples all stay
    assert int((~background(small)).sum()) == int((~background(full)).sum())
    torch.testing.assert_close(small.reg_proposals, full.reg_proposals)
    torch.testing.assert_close(small.reg_features.float(), full.reg_features, atol=1e-2, rtol=1e-2)


def test_svm_stage_refuses_a_softmax_model(tiny_shapes, tmp_path):
    cfg = _config(tiny_shapes, str(tmp_path))
    cfg.model.box_predictor = cfg.train.stages[0].replace["model.box_predictor"]
    with pytest.raises(TypeError, match="LinearSVMOutputLayers"):
        TrainSVMs()(cfg, instantiate(cfg.model))


# ------------------------------------------------------------------------------------ the staged run


def test_run_stages_take_no_iterations_and_replacements_are_checked_before_training():
    cfg = LazyConfig.load(configs_root() / CONFIG)
    stages = parse_stages(cfg)
    assert [(s.name, s.max_iter, s.run is not None) for s in stages] == [
        ("1_finetune", 2400, False),
        ("2_svms", 0, True),
        ("3_box_regressors", 0, True),
    ]
    # the fine-tuning stage swaps the SVMs for a softmax; the final model (cfg.model) keeps them
    assert stage_config(cfg, stages[0]).model.box_predictor._target_.__name__ == "FastRCNNOutputLayers"
    assert stage_config(cfg, stages[1]).model.box_predictor._target_.__name__ == "LinearSVMOutputLayers"
    assert stage_iterations([{"share": 0.5}, {"run": {}}, {"share": 0.5}], 10) == [5, 0, 5]
    with pytest.raises(ValueError, match="takes no 'share' or 'max_iter'"):
        stage_iterations([{"run": {}, "share": 0.5}], 10)
    cfg.train.stages[0].replace = {"model.box_predictr": None}
    with pytest.raises(ValueError, match="box_predictr"):
        parse_stages(cfg)


def test_the_shapes_config_trains_all_stages_from_one_command(tiny_shapes, tmp_path, restore_loggers):
    out = str(tmp_path / "run")
    train_net.main(
        [
            f"--config-file={CONFIG}",
            *_overrides(tiny_shapes),
            "train.max_iter=3",
            "+train.check_data=False",
            "train.log_period=100",
            f"train.output_dir={out}",
        ]
    )
    assert read_completed(out) == STAGES
    results = json.load(open(os.path.join(out, "final_results.json"), encoding="utf-8"))
    assert "bbox/AP" in results and "bbox/AP50" in results

    def weights(stage: str = "") -> dict[str, torch.Tensor]:
        return torch.load(os.path.join(out, stage, "model_final.pth"), weights_only=True)["model"]

    finetuned, svms, final = weights("1_finetune"), weights("2_svms"), weights("3_box_regressors")
    # stage 1 fine-tuned a softmax; the later stages keep its CNN and fc layers exactly
    assert "box_predictor.cls_score.weight" in finetuned and "box_predictor.svm.weight" not in finetuned
    for key in (k for k in finetuned if k.startswith(("backbone.", "box_head."))):
        assert torch.equal(finetuned[key], svms[key]) and torch.equal(svms[key], final[key]), key
    # stage 2 installed the SVMs, stage 3 the box regressors (zero until then)
    assert torch.count_nonzero(svms["pool5_bbox_pred.weight"]) == 0
    assert torch.count_nonzero(final["pool5_bbox_pred.weight"]) > 0
    assert torch.equal(svms["box_predictor.svm.weight"], final["box_predictor.svm.weight"])
    # the run's model is stage 3's, and loads strictly into the config's model
    assert all(torch.equal(v, final[k]) for k, v in weights().items())
    model = instantiate(LazyConfig.load(configs_root() / CONFIG).model)
    model.load_state_dict(weights(), strict=True)
