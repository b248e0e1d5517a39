"""Freezing by name (rcnnzoo.engine.freeze) and train.freeze in do_train."""

from __future__ import annotations

import os

import pytest
import torch
from engine_toys import L, captured_log, make_cfg, toy_loader
from torch import nn

from rcnnzoo.engine import do_train
from rcnnzoo.engine.freeze import freeze_parameters, matches_pattern
from rcnnzoo.solver import get_default_optimizer_params


class TwoParts(nn.Module):
    """A "backbone" with BatchNorm and a two-layer "head"; 120 + 30 parameters in 4 + 4 tensors."""

    def __init__(self) -> None:
        super().__init__()
        self.backbone = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU())
        self.head = nn.ModuleDict({"cls": nn.Linear(4, 2), "reg": nn.Linear(4, 4)})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.backbone(x).mean(dim=(2, 3))
        return self.head["cls"](f).square().sum() + self.head["reg"](f).square().sum()


def _frozen(model: nn.Module) -> list[str]:
    return [n for n, p in model.named_parameters() if not p.requires_grad]


BACKBONE = ["backbone.0.weight", "backbone.0.bias", "backbone.1.weight", "backbone.1.bias"]


@pytest.mark.parametrize("pattern", ["backbone", "backbone.*", r"re:backbone\..*", "back*"])
def test_module_path_glob_and_regex_freeze_the_same_parameters(pattern):
    model = TwoParts()
    report = freeze_parameters(model, [pattern])
    assert _frozen(model) == BACKBONE
    assert report.frozen_names == BACKBONE
    assert report.frozen_norms == ["backbone.1"]


def test_patterns_reach_single_modules_and_leaves():
    model = TwoParts()
    freeze_parameters(model, ["head.cls", "*.0.bias"])
    assert _frozen(model) == ["backbone.0.bias", "head.cls.weight", "head.cls.bias"]
    # a regex matches whole paths, not a prefix of one
    assert not matches_pattern("re:head", "heads.cls.weight")
    assert matches_pattern("re:head", "head.cls.weight")
    assert not matches_pattern("head.c", "head.cls.weight")


def test_a_pattern_that_matches_nothing_is_an_error_naming_close_modules():
    model = TwoParts()
    with pytest.raises(ValueError, match=r"\['head.clss'\] match no parameter.*Did you mean 'head.cls'"):
        freeze_parameters(model, ["head", "head.clss"])
    assert not _frozen(model)  # nothing frozen when one pattern is wrong
    with pytest.raises(ValueError, match="non-empty strings"):
        freeze_parameters(model, [""])


def test_counts_and_the_log_line():
    model = TwoParts()
    report = freeze_parameters(model, ["backbone"])
    assert (report.counts.trainable, report.counts.trainable_tensors) == (30, 4)
    assert (report.counts.frozen, report.counts.frozen_tensors) == (120, 4)
    assert report.summary() == (
        "Parameters: 30 parameters (4 tensors) train, 120 (4 tensors) are frozen; "
        "train.freeze ['backbone'] froze 4 tensors and keeps 1 BatchNorm layers in eval mode"
    )
    assert freeze_parameters(TwoParts(), []).summary() == (
        "Parameters: 150 parameters (8 tensors) train, 0 (0 tensors) are frozen"
    )


def _train_steps(model: nn.Module, steps: int = 3) -> None:
    params = get_default_optimizer_params(model, weight_decay=1e-2)
    optimizer = torch.optim.SGD(params, lr=0.1, momentum=0.9, weight_decay=1e-2)
    g = torch.Generator().manual_seed(0)
    for _ in range(steps):
        model.train()  # as the trainer and the evaluation hook do
        loss = model(torch.randn(2, 3, 6, 6, generator=g) * 3 + 1)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def test_frozen_parameters_and_batchnorm_statistics_stay_bit_identical():
    torch.manual_seed(0)
    model = TwoParts()
    freeze_parameters(model, ["backbone"])
    before = {k: v.clone() for k, v in model.state_dict().items()}
    _train_steps(model)
    after = model.state_dict()
    for key, value in before.items():
        # running_mean, running_var and num_batches_tracked included
        assert torch.equal(value, after[key]) == key.startswith("backbone."), key

    # Without freezing, the same steps move the statistics: the check above has teeth.
    control = TwoParts()
    control.load_state_dict(before)
    _train_steps(control)
    assert not torch.equal(control.backbone[1].running_mean, before["backbone.1.running_mean"])


def test_a_frozen_batchnorm_normalizes_with_its_stored_statistics_in_train_mode():
    torch.manual_seed(0)
    model = TwoParts()
    model.backbone[1].running_mean.fill_(0.5)
    freeze_parameters(model, ["backbone.1"])
    x = torch.randn(2, 3, 6, 6)
    model.eval()
    expected = model.backbone(x)
    model.train()
    assert torch.equal(model.backbone(x), expected)
    assert model.backbone[0].weight.requires_grad  # only the BatchNorm was named


class BodyAndHead(nn.Module):
    """ToyRegressor's calling convention with a frozen-able body (BatchNorm included)."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8))
        self.head = nn.Linear(8, 1)

    def forward(self, batched_inputs: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        x = torch.stack([d["x"] for d in batched_inputs])
        y = torch.stack([d["y"] for d in batched_inputs])
        return {"loss_mse": ((self.head(self.body(x)) - y) ** 2).mean()}


def test_do_train_applies_train_freeze_before_building_the_optimizer(tmp_path):
    out = str(tmp_path)
    cfg = make_cfg(
        {
            "optimizer": L(torch.optim.SGD, params=L(get_default_optimizer_params), lr=0.05, momentum=0.9),
            "lr_multiplier": L(_constant),
            "dataloader": {"train": L(toy_loader, batch_size=8)},
            "train": {
                "output_dir": out,
                "max_iter": 4,
                "init_checkpoint": "",
                "checkpointer": {"period": 0},
                "log_period": 2,
                "device": "cpu",
                "freeze": ["body"],
            },
        }
    )
    torch.manual_seed(0)
    model = BodyAndHead()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with captured_log("rcnnzoo.engine") as messages:
        do_train(cfg, model)
    assert (
        "Parameters: 9 parameters (2 tensors) train, 56 (4 tensors) are frozen; "
        "train.freeze ['body'] froze 4 tensors and keeps 1 BatchNorm layers in eval mode"
    ) in messages
    final = torch.load(os.path.join(out, "model_final.pth"), weights_only=True)
    for key, value in before.items():
        assert torch.equal(value, final["model"][key]) == key.startswith("body."), key
    # The optimizer was given the head's two tensors only.
    assert [len(g["params"]) for g in final["optimizer"]["param_groups"]] == [2]


def _constant():
    from fvcore.common.param_scheduler import ConstantParamScheduler

    return ConstantParamScheduler(1.0)
