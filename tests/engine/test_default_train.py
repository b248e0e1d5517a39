"""do_train / do_test end to end on a toy model, through a stand-in for the lazy-config layer."""

from __future__ import annotations

import json
import os

import pytest
import torch
from engine_toys import (
    L,
    ToyEvaluator,
    ToyEvaluatorWithoutOutputDir,
    ToyRegressor,
    make_cfg,
    toy_loader,
    toy_test_loader,
)
from omegaconf import DictConfig

from rcnnzoo.engine import AMPTrainer, do_test, do_train
from rcnnzoo.engine import default_train as default_train_module
from rcnnzoo.solver import MultiStepParamScheduler, WarmupParamScheduler, get_default_optimizer_params


def _cfg(output_dir: str, max_iter: int = 12, **train: object) -> DictConfig:
    return make_cfg(
        {
            "optimizer": L(
                torch.optim.SGD,
                params=L(get_default_optimizer_params, weight_decay_norm=0.0),
                lr=0.05,
                momentum=0.0,
                weight_decay=1e-4,
            ),
            "lr_multiplier": L(
                WarmupParamScheduler,
                scheduler=L(MultiStepParamScheduler, values=[1.0, 0.1], milestones=[8], num_updates=12),
                warmup_length=2 / 12,
                warmup_method="linear",
                warmup_factor=0.1,
            ),
            "dataloader": {
                "train": L(toy_loader, batch_size=8),
                "test": L(toy_test_loader),
                "evaluator": L(ToyEvaluator, output_dir=None),
            },
            "train": {
                "output_dir": output_dir,
                "max_iter": max_iter,
                "init_checkpoint": "",
                "checkpointer": {"period": 5},
                "eval_period": 6,
                "log_period": 3,
                "device": "cpu",
                "amp": {"enabled": False},
                "seed": 0,
                **train,
            },
        }
    )


def _metrics(output_dir: str) -> list[dict]:
    with open(os.path.join(output_dir, "metrics.json"), encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def test_do_train_writes_metrics_checkpoints_and_evaluates(tmp_path, fake_lazy) -> None:
    out = str(tmp_path)
    torch.manual_seed(0)
    model = ToyRegressor()
    cfg = _cfg(out)
    untrained_mae = do_test(cfg, model)["toy"]["MAE"]
    do_train(cfg, model, resume=False)

    lines = _metrics(out)
    by_iter = {}
    for line in lines:
        by_iter.setdefault(line["iteration"], {}).update(line)
    assert sorted(by_iter) == [2, 5, 8, 11]  # log_period 3
    assert {"total_loss", "loss_mse", "loss_l1", "lr", "time", "data_time"} <= set(by_iter[2])
    assert by_iter[2]["lr"] == pytest.approx(0.05)  # warmup (0.1 -> 1.0 over 2 its) is over by it 2
    assert by_iter[11]["lr"] == pytest.approx(0.005)  # after the milestone at 8
    assert "toy/MAE" in by_iter[5] and "toy/MAE" in by_iter[11]  # eval_period 6 and the end
    assert by_iter[11]["toy/MAE"] < 0.5 * untrained_mae

    files = sorted(f for f in os.listdir(out) if f.endswith(".pth"))
    assert files == ["model_0000004.pth", "model_0000009.pth", "model_final.pth"]
    final = torch.load(os.path.join(out, "model_final.pth"), weights_only=True)
    assert {"model", "optimizer", "scheduler", "iteration"} <= set(final) and final["iteration"] == 11
    assert {e.output_dir for e in ToyEvaluator.built} == {out}  # filled from train.output_dir
    assert cfg.dataloader.evaluator.output_dir is None  # ... without editing the config
    assert model.training


def test_do_train_resume_continues_after_the_last_checkpoint(tmp_path, fake_lazy) -> None:
    out = str(tmp_path)
    do_train(_cfg(out, max_iter=12), ToyRegressor(), resume=False)
    trained = torch.load(os.path.join(out, "model_final.pth"), weights_only=True)

    seen_weights, steps = [], []
    resumed_model = ToyRegressor()
    original = default_train_module.SimpleTrainer.run_step

    def spy(self):  # records the iterations run and the weights the first resumed step starts from
        if not seen_weights:
            seen_weights.append(self.model.linear.weight.detach().clone())
        steps.append(self.iter)
        original(self)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(default_train_module.SimpleTrainer, "run_step", spy)
        do_train(_cfg(out, max_iter=15), resumed_model, resume=True)

    assert torch.equal(seen_weights[0], trained["model"]["linear.weight"])
    assert steps == [12, 13, 14]
    # appended: the first run's lines, then the resumed run's
    assert [line["iteration"] for line in _metrics(out)] == [2, 5, 8, 11, 14]
    assert torch.load(os.path.join(out, "model_final.pth"), weights_only=True)["iteration"] == 14


def test_do_train_without_resume_starts_at_zero_from_init_checkpoint(tmp_path, fake_lazy) -> None:
    first, second = str(tmp_path / "a"), str(tmp_path / "b")
    do_train(_cfg(first, max_iter=6), ToyRegressor(), resume=False)
    cfg = _cfg(second, max_iter=3, init_checkpoint=os.path.join(first, "model_final.pth"))
    do_train(cfg, ToyRegressor(), resume=True)  # no checkpoint in `second` yet: init weights, iteration 0
    assert [line["iteration"] for line in _metrics(second)] == [2]  # iterations 0..2, not 6..


def test_do_train_with_amp_uses_amp_trainer(tmp_path, fake_lazy, monkeypatch) -> None:
    built = []
    original = default_train_module._build_trainer

    def spy(*args, **kwargs):
        built.append(original(*args, **kwargs))
        return built[-1]

    monkeypatch.setattr(default_train_module, "_build_trainer", spy)
    cfg = _cfg(str(tmp_path), max_iter=3, amp={"enabled": True, "dtype": "bfloat16"})
    do_train(cfg, ToyRegressor(), resume=False)
    assert isinstance(built[0], AMPTrainer) and built[0].precision == "bfloat16"


def test_do_test_returns_nested_results(tmp_path, fake_lazy) -> None:
    results = do_test(_cfg(str(tmp_path)), ToyRegressor())
    assert set(results) == {"toy"} and results["toy"]["MAE"] > 0


@pytest.mark.parametrize(
    "evaluator, expected",
    [
        (L(ToyEvaluator), "train"),  # unset: filled
        (L(ToyEvaluator, output_dir="elsewhere"), "elsewhere"),  # set: kept
        (L(ToyEvaluatorWithoutOutputDir), None),  # not an argument of the evaluator: not passed
    ],
)
def test_do_test_fills_evaluator_output_dir_only_where_it_fits(
    tmp_path, fake_lazy, evaluator, expected
) -> None:
    cfg = _cfg(str(tmp_path / "train"))
    cfg.dataloader.evaluator = evaluator
    do_test(cfg, ToyRegressor())
    (built,) = ToyEvaluator.built
    assert built.output_dir == (str(tmp_path / expected) if expected == "train" else expected)
