"""Optional training features: gradient clipping, the best-checkpoint keeper, RNG-neutral evaluation,
and their wiring from ``cfg.train`` in ``do_train`` (absent keys: off)."""

from __future__ import annotations

import json
import os
import random

import numpy as np
import pytest
import torch
from engine_toys import L, ToyEvaluator, ToyRegressor, make_cfg, toy_loader, toy_test_loader
from omegaconf import DictConfig

from rcnnzoo.checkpoint import Checkpointer
from rcnnzoo.engine import AMPTrainer, BestCheckpointer, EvalHook, SimpleTrainer, do_train
from rcnnzoo.engine.train_loop import HookBase
from rcnnzoo.solver import ConstantParamScheduler, build_grad_clipper, get_default_optimizer_params

# ------------------------------------------------------------------ gradient clipping in the trainers


class _RecordUpdates(HookBase):
    """The L2 norm of each iteration's parameter update."""

    def __init__(self) -> None:
        self.before: list[torch.Tensor] = []
        self.norms: list[float] = []

    def before_step(self) -> None:
        self.before = [p.detach().clone() for p in self.trainer.model.parameters()]

    def after_step(self) -> None:
        after = [p.detach() for p in self.trainer.model.parameters()]
        self.norms.append(float(torch.sqrt(sum(((a - b) ** 2).sum() for a, b in zip(after, self.before)))))


@pytest.mark.parametrize("precision", [None, "float16"])
def test_clip_by_norm_bounds_every_update(precision) -> None:
    torch.manual_seed(0)
    model = ToyRegressor()
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)  # unclipped, this LR would explode
    clipper = build_grad_clipper("norm", value=0.01)
    if precision is None:
        trainer = SimpleTrainer(model, toy_loader(), optimizer, grad_clipper=clipper)
    else:
        trainer = AMPTrainer(model, toy_loader(), optimizer, precision=precision, grad_clipper=clipper)
    updates = _RecordUpdates()
    trainer.register_hooks([updates])
    trainer.train(0, 8)
    assert max(updates.norms) <= 0.01 * (1 + 1e-3)
    norms = [n for n, _ in trainer.storage.history("grad_norm").values() if np.isfinite(n)]
    # recorded before clipping and, with fp16, after unscaling: the true gradient norm, not x65536
    assert norms and max(norms) > 0.01 and max(norms) < 1e3


def test_without_a_clipper_no_grad_norm_is_recorded() -> None:
    model = ToyRegressor()
    trainer = SimpleTrainer(model, toy_loader(), torch.optim.SGD(model.parameters(), lr=0.01))
    trainer.train(0, 2)
    assert "grad_norm" not in trainer.storage.histories()


# ------------------------------------------------------------------ BestCheckpointer


class _Metric(HookBase):
    """Records ``values[i]`` as ``toy/AP`` at iteration i (None: no evaluation), like EvalHook."""

    def __init__(self, values: list[float | None]) -> None:
        self.values = values

    def after_step(self) -> None:
        value = self.values[self.trainer.iter]
        if value is not None:
            self.trainer.storage.put_scalar("toy/AP", value, smoothing_hint=False)


def _train_with_best(tmp_path, values, mode: str) -> tuple[Checkpointer, BestCheckpointer, list[str]]:
    torch.manual_seed(0)
    model = ToyRegressor()
    trainer = SimpleTrainer(model, toy_loader(), torch.optim.SGD(model.parameters(), lr=0.01))
    checkpointer = Checkpointer(model, str(tmp_path), optimizer=trainer.optimizer)
    best = BestCheckpointer(checkpointer, "toy/AP", mode)
    saved: list[int] = []
    original = checkpointer.save

    def spy(name, **kwargs):
        saved.append(kwargs["iteration"])
        original(name, **kwargs)

    checkpointer.save = spy  # type: ignore[method-assign]
    trainer.register_hooks([best, _Metric(values)])  # registered first, still runs after (priority LOW)
    trainer.train(0, len(values))
    return checkpointer, best, saved


@pytest.mark.parametrize(
    "mode, values, saved_at, best",
    [
        ("max", [None, 0.3, None, 0.2, 0.5, float("nan"), 0.5], [1, 4], 0.5),
        ("min", [0.3, 0.2, 0.4, 0.1], [0, 1, 3], 0.1),
    ],
)
def test_best_checkpointer_saves_only_improvements(tmp_path, mode, values, saved_at, best) -> None:
    _, hook, saved = _train_with_best(tmp_path, values, mode)
    assert saved == saved_at and hook.best_value == best and hook.best_iter == saved_at[-1]
    data = torch.load(tmp_path / "model_best.pth", weights_only=True)
    assert (
        data["best_value"] == best and data["iteration"] == saved_at[-1] and data["best_metric"] == "toy/AP"
    )
    assert "optimizer" not in data  # the model only: not a resume point ...
    assert not (tmp_path / "last_checkpoint").exists()  # ... and last_checkpoint is not moved to it
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".tmp")]  # written atomically


def test_resumed_best_checkpointer_does_not_replace_a_better_file(tmp_path) -> None:
    # The first run saved model_best at iteration 1 (0.6); the checkpoint of iteration 1 was written
    # before that evaluation, so it only knows 0.4.
    _train_with_best(tmp_path, [0.4, 0.6], "max")
    torch.manual_seed(0)
    model = ToyRegressor()
    trainer = SimpleTrainer(model, toy_loader(), torch.optim.SGD(model.parameters(), lr=0.01))
    hook = BestCheckpointer(Checkpointer(model, str(tmp_path)), "toy/AP", "max")
    hook.load_state_dict({"metric": "toy/AP", "mode": "max", "best_value": 0.4, "best_iter": 0})
    trainer.register_hooks([hook, _Metric([None, None, 0.5, 0.55])])
    trainer.train(2, 4)  # resumed at iteration 2
    assert (hook.best_value, hook.best_iter) == (0.6, 1)
    assert torch.load(tmp_path / "model_best.pth", weights_only=True)["iteration"] == 1


def test_best_checkpointer_state_round_trip_and_changed_metric(tmp_path) -> None:
    _, hook, _ = _train_with_best(tmp_path, [0.4, 0.6], "max")
    fresh = BestCheckpointer(Checkpointer(ToyRegressor(), str(tmp_path)), "toy/AP", "max")
    fresh.load_state_dict(hook.state_dict())
    assert (fresh.best_value, fresh.best_iter) == (0.6, 1)
    other = BestCheckpointer(Checkpointer(ToyRegressor(), str(tmp_path)), "toy/AP", "min")
    other.load_state_dict(hook.state_dict())  # another mode: start over
    assert other.best_value is None
    with pytest.raises(ValueError, match="mode"):
        BestCheckpointer(Checkpointer(ToyRegressor()), "toy/AP", "best")


# ------------------------------------------------------------------ evaluation leaves the RNG alone


def test_eval_hook_restores_the_global_random_streams() -> None:
    def draws() -> tuple:
        return random.random(), float(np.random.rand()), torch.rand(()).item()

    def noisy_eval() -> dict:
        draws()  # an evaluation that draws random numbers (test-time augmentation, sampling...)
        return {"toy": {"AP": 0.5}}

    torch.manual_seed(0)
    model = ToyRegressor()
    trainer = SimpleTrainer(model, toy_loader(), torch.optim.SGD(model.parameters(), lr=0.01))
    trainer.register_hooks([EvalHook(1, noisy_eval)])
    random.seed(1), np.random.seed(1), torch.manual_seed(1)
    trainer.train(0, 3)
    after_training = draws()
    random.seed(1), np.random.seed(1), torch.manual_seed(1)
    assert after_training == draws()  # toy_loader and the toy model draw nothing from the globals


# ------------------------------------------------------------------ wiring from the config


def _cfg(output_dir: str, max_iter: int = 8, **train: object) -> DictConfig:
    return make_cfg(
        {
            "optimizer": L(torch.optim.SGD, params=L(get_default_optimizer_params), lr=0.05),
            "lr_multiplier": L(ConstantParamScheduler, value=1.0),
            "dataloader": {
                "train": L(toy_loader, batch_size=8),
                "test": L(toy_test_loader),
                "evaluator": L(ToyEvaluator, output_dir=None),
            },
            "train": {
                "output_dir": output_dir,
                "max_iter": max_iter,
                "init_checkpoint": "",
                "checkpointer": {"period": 4},
                "eval_period": 2,
                "log_period": 1,
                "device": "cpu",
                **train,
            },
        }
    )


def _metrics(output_dir: str) -> list[dict]:
    with open(os.path.join(output_dir, "metrics.json"), encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def test_do_train_without_the_optional_keys_keeps_them_off(tmp_path, fake_lazy) -> None:
    do_train(_cfg(str(tmp_path)), ToyRegressor())
    assert not any("grad_norm" in line for line in _metrics(str(tmp_path)))
    assert not (tmp_path / "model_best.pth").exists()


def test_do_train_clips_and_keeps_the_best_checkpoint_across_a_resume(tmp_path, fake_lazy) -> None:
    out = str(tmp_path)
    options = {
        "clip_grad": {"type": "norm", "value": 0.5},
        "best_checkpoint": {"metric": "toy/MAE", "mode": "min"},
    }
    torch.manual_seed(0)
    do_train(_cfg(out, **options), ToyRegressor())
    first = torch.load(tmp_path / "model_best.pth", weights_only=True)
    torch.manual_seed(0)
    do_train(_cfg(out, max_iter=12, **options), ToyRegressor(), resume=True)

    lines = _metrics(out)
    assert all("grad_norm" in line for line in lines if "total_loss" in line)
    maes = {line["iteration"]: line["toy/MAE"] for line in lines if "toy/MAE" in line}
    assert sorted(maes) == [1, 3, 5, 7, 9, 11]
    best_iter = min(maes, key=maes.get)
    best = torch.load(tmp_path / "model_best.pth", weights_only=True)
    assert best["iteration"] == best_iter and best["best_value"] == pytest.approx(maes[best_iter])
    assert first["best_value"] == pytest.approx(min(v for i, v in maes.items() if i < 8))
    with open(tmp_path / "last_checkpoint", encoding="utf-8") as f:
        assert f.read() == "model_final.pth"
