"""optimize_for_inference: folded norms and channels-last compute what the model as built computes."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from rcnnzoo.checkpoint import Checkpointer
from rcnnzoo.config import instantiate
from rcnnzoo.layers import FrozenBatchNorm2d
from rcnnzoo.model_zoo import get_config
from rcnnzoo.modeling import ResNet, fold_conv_norms, optimize_for_inference, register_conv_norm_pairs
from rcnnzoo.modeling.inference_optimization import CONV_NORM_PAIRS, is_optimized_for_inference


def randomize_norms(model: nn.Module, seed: int = 0) -> None:
    """Statistics and affine parameters far from identity, so that a wrong fold shows."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (FrozenBatchNorm2d, nn.BatchNorm2d)):
                n = len(m.weight)
                m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                m.bias.copy_(torch.rand(n, generator=g) - 0.5)
                m.running_mean.copy_(torch.rand(n, generator=g) - 0.5)
                m.running_var.copy_(torch.rand(n, generator=g) + 0.5)


def count(model: nn.Module, kind: type) -> int:
    return sum(isinstance(m, kind) for m in model.modules())


@pytest.mark.parametrize("norm", ["FrozenBN", "BN"])
def test_resnet_folds_every_norm_and_keeps_its_outputs(norm):
    torch.manual_seed(0)
    model = ResNet(depth=18, norm=norm, freeze_at=0).eval()
    randomize_norms(model)
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        expected = model(x)
    norms = count(model, FrozenBatchNorm2d) + count(model, nn.BatchNorm2d)
    assert fold_conv_norms(model) == norms == 20  # stem + 8 blocks x 2 + 3 downsample branches
    assert count(model, FrozenBatchNorm2d) + count(model, nn.BatchNorm2d) == 0
    with torch.no_grad():
        got = model(x)
    for name in expected:
        # rounding differences, relative to the map's scale (it grows through 8 blocks)
        scale = float(expected[name].abs().max())
        torch.testing.assert_close(got[name], expected[name], rtol=1e-4, atol=1e-5 * scale)


def test_what_is_not_a_fixed_affine_map_stays():
    train_bn = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8))  # training mode: batch statistics
    gn = nn.Sequential(nn.Conv2d(3, 8, 3), nn.GroupNorm(2, 8))
    no_stats = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8, track_running_stats=False).eval())
    norm_first = nn.Sequential(nn.BatchNorm2d(3).eval(), nn.Conv2d(3, 8, 3))
    reflect = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, padding_mode="reflect"), nn.BatchNorm2d(8).eval())
    for module in (train_bn, gn, no_stats, norm_first, reflect):
        before = copy.deepcopy(module.state_dict())
        assert fold_conv_norms(module) == 0
        assert module.state_dict().keys() == before.keys()


class ConvThenNorm(nn.Module):
    """Not a Sequential: only a registration says that ``conv`` feeds ``norm`` alone."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1, bias=True)
        self.norm = FrozenBatchNorm2d(4)

    def forward(self, x):
        return self.norm(self.conv(x)).relu()


def test_custom_modules_fold_only_once_registered(monkeypatch):
    monkeypatch.setattr("rcnnzoo.modeling.inference_optimization.CONV_NORM_PAIRS", dict(CONV_NORM_PAIRS))
    torch.manual_seed(0)
    module = ConvThenNorm()
    randomize_norms(module)
    x = torch.randn(1, 3, 8, 8)
    expected = module(x)
    assert fold_conv_norms(copy.deepcopy(module)) == 0
    register_conv_norm_pairs(ConvThenNorm, (("conv", "norm"),))
    assert fold_conv_norms(module) == 1 and isinstance(module.norm, nn.Identity)
    torch.testing.assert_close(module(x), expected, rtol=1e-5, atol=1e-6)  # the conv's own bias folded too


def detections(model, inputs):
    with torch.no_grad():
        return [out["instances"] for out in model(inputs)]


def shapes_inputs(n: int = 2):
    """Shapes images (CHW uint8): real edges and objects, unlike noise."""
    import numpy as np

    from rcnnzoo.data.datasets.shapes import ShapesParams, _render_image

    images = [_render_image(np.random.default_rng(i), ShapesParams())[0] for i in range(n)]
    return [{"image": torch.as_tensor(np.ascontiguousarray(im)).permute(2, 0, 1)} for im in images]


@pytest.mark.parametrize("config", ["Shapes/faster_rcnn_tiny_fpn.py", "Shapes/mask_rcnn_tiny_fpn.py"])
def test_detectors_give_the_same_detections(config):
    cfg = get_config(config)
    cfg.model.roi_heads.box_predictor.test_score_thresh = 0.0
    cfg.model.roi_heads.box_predictor.test_topk_per_image = 20
    torch.manual_seed(0)
    model = instantiate(cfg.model).eval()
    randomize_norms(model)
    inputs = shapes_inputs()
    expected = detections(model, inputs)
    optimized = optimize_for_inference(copy.deepcopy(model))
    assert count(optimized, nn.BatchNorm2d) == 0 and is_optimized_for_inference(optimized)
    assert not any(p.requires_grad for p in optimized.parameters())
    got = detections(optimized, inputs)
    for a, b in zip(got, expected):
        assert len(a) == len(b) > 0
        torch.testing.assert_close(a.scores, b.scores, rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(a.pred_boxes.tensor, b.pred_boxes.tensor, rtol=1e-5, atol=1e-3)
        assert torch.equal(a.pred_classes, b.pred_classes)
        if b.has("pred_masks"):
            assert (a.pred_masks != b.pred_masks).float().mean() < 1e-3  # a few border pixels at most


def test_optimized_models_are_not_saved(tmp_path):
    model = optimize_for_inference(ResNet(depth=18, freeze_at=0))
    with pytest.raises(ValueError, match="optimize_for_inference"):
        Checkpointer(model, str(tmp_path)).save("model_final")
    assert not list(tmp_path.iterdir())


def test_channels_last_by_default_on_the_cpu_only_when_asked_elsewhere():
    def conv_weight_is_channels_last(model):
        w = model.conv1.weight
        return w.is_contiguous(memory_format=torch.channels_last) and not w.is_contiguous()

    assert conv_weight_is_channels_last(optimize_for_inference(ResNet(depth=18, freeze_at=0)))
    assert not conv_weight_is_channels_last(
        optimize_for_inference(ResNet(depth=18, freeze_at=0), channels_last=False)
    )


def test_optimized_mask_rcnn_runs_under_bf16_autocast():
    """Channels-last and mixed precision together, end to end (GUIDE section 6)."""
    torch.manual_seed(0)
    model = optimize_for_inference(instantiate(get_config("Shapes/mask_rcnn_tiny_fpn.py").model))
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        (out,) = model(shapes_inputs(1))
    inst = out["instances"]
    assert len(inst) > 0 and torch.isfinite(inst.pred_boxes.tensor.float()).all()
    assert inst.pred_masks.shape[0] == len(inst)
