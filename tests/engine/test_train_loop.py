"""SimpleTrainer / AMPTrainer / TrainerBase: training works, bad losses stop it, hooks run in order."""

from __future__ import annotations

import math
import weakref

import pytest
import torch
from engine_toys import ToyRegressor, captured_log, toy_loader

from rcnnzoo.engine import AMPTrainer, HookBase, Priority, SimpleTrainer, TrainerBase


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def _loss_values(trainer: TrainerBase, name: str = "total_loss") -> list[float]:
    return [v for v, _ in trainer.storage.history(name).values()]


def test_simple_trainer_reduces_loss() -> None:
    torch.manual_seed(0)
    model = ToyRegressor()
    trainer = SimpleTrainer(model, toy_loader(), torch.optim.SGD(model.parameters(), lr=0.05))
    trainer.train(0, 150)

    losses = _loss_values(trainer)
    assert len(losses) == 150
    assert _mean(losses[-10:]) < 0.02 * _mean(losses[:10])
    assert torch.allclose(
        model.linear.weight.detach().T, torch.tensor([[1.5], [-2.0], [0.5], [3.0]]), atol=0.1
    )
    # total_loss is the sum of the terms, and data loading was timed
    first = {n: trainer.storage.history(n).values()[0][0] for n in ("total_loss", "loss_mse", "loss_l1")}
    assert math.isclose(first["total_loss"], first["loss_mse"] + first["loss_l1"], rel_tol=1e-6)
    assert trainer.storage.history("data_time").latest() >= 0.0


@pytest.mark.parametrize("bad, shown", [(float("nan"), "loss_bad=nan"), (float("inf"), "loss_bad=inf")])
def test_non_finite_loss_names_the_term_and_skips_the_step(bad: float, shown: str) -> None:
    model = ToyRegressor(bad_loss=bad)
    before = model.linear.weight.detach().clone()
    trainer = SimpleTrainer(model, toy_loader(), torch.optim.SGD(model.parameters(), lr=0.1))
    with pytest.raises(FloatingPointError) as info:
        trainer.train(0, 5)
    message = str(info.value)
    assert shown in message and "iteration 0" in message
    assert "loss_mse=" not in message.split("(all losses")[0]  # finite terms are not blamed
    assert torch.equal(model.linear.weight, before)  # no backward/step with a broken loss


def test_non_finite_loss_names_the_batch_images() -> None:
    def loader():
        for batch in toy_loader(batch_size=2):
            yield [dict(d, image_id=100 + i, file_name=f"img{i}.png") for i, d in enumerate(batch)]

    model = ToyRegressor(bad_loss=float("nan"))
    trainer = SimpleTrainer(model, loader(), torch.optim.SGD(model.parameters(), lr=0.1))
    with pytest.raises(FloatingPointError, match=r"100 \(img0.png\), 101 \(img1.png\)"):
        trainer.train(0, 5)


def test_model_must_return_scalar_losses() -> None:
    class Wrong(ToyRegressor):
        def forward(self, batched_inputs):  # type: ignore[override]
            return {"loss_vec": torch.ones(3, requires_grad=True)}

    model = Wrong()
    trainer = SimpleTrainer(model, toy_loader(), torch.optim.SGD(model.parameters(), lr=0.1))
    with pytest.raises(TypeError, match="loss_vec.*scalar"):
        trainer.train(0, 1)


class _Recorder(HookBase):
    def __init__(self, name: str, log: list[str], priority: int = Priority.NORMAL) -> None:
        self.name, self.log, self.priority = name, log, priority

    def before_train(self) -> None:
        self.log.append(f"{self.name}.before_train")

    def before_step(self) -> None:
        self.log.append(f"{self.name}.before_step@{self.trainer.iter}")

    def after_step(self) -> None:
        self.log.append(f"{self.name}.after_step@{self.trainer.iter}")

    def after_train(self) -> None:
        self.log.append(f"{self.name}.after_train")


class _CountingTrainer(TrainerBase):
    def __init__(self, log: list[str], fail_at: int | None = None) -> None:
        super().__init__()
        self.log, self.fail_at = log, fail_at

    def run_step(self) -> None:
        if self.iter == self.fail_at:
            raise ValueError("boom")
        self.log.append(f"run_step@{self.iter}")


def test_hooks_run_by_priority_then_registration_order() -> None:
    log: list[str] = []
    trainer = _CountingTrainer(log)
    a, b = _Recorder("a", log), _Recorder("b", log, Priority.LOWEST)
    c, d = _Recorder("c", log, Priority.HIGHEST), _Recorder("d", log)
    trainer.register_hooks([a, b, None, c, d])
    trainer.train(5, 7)

    order = ["c", "a", "d", "b"]
    expected = [f"{h}.before_train" for h in order]
    for it in (5, 6):
        expected += [f"{h}.before_step@{it}" for h in order]
        expected += [f"run_step@{it}"]
        expected += [f"{h}.after_step@{it}" for h in order]
    expected += [f"{h}.after_train" for h in order]
    assert log == expected
    assert isinstance(a.trainer, weakref.ProxyType)
    assert trainer.storage.iter == 6


def test_register_rejects_non_hooks() -> None:
    with pytest.raises(TypeError, match="HookBase"):
        _CountingTrainer([]).register_hooks([object()])  # type: ignore[list-item]


def test_exception_is_logged_with_iteration_and_after_train_still_runs() -> None:
    log: list[str] = []
    trainer = _CountingTrainer(log, fail_at=3)
    trainer.register_hooks([_Recorder("h", log)])
    with captured_log("rcnnzoo.engine.train_loop") as messages, pytest.raises(ValueError, match="boom"):
        trainer.train(0, 10)
    assert any("iteration 3" in m for m in messages)
    assert log[-1] == "h.after_train"
    assert "h.after_step@3" not in log


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_amp_trainer_trains_on_cpu(precision: str) -> None:
    torch.manual_seed(0)
    model = ToyRegressor()
    trainer = AMPTrainer(
        model, toy_loader(), torch.optim.SGD(model.parameters(), lr=0.05), precision=precision
    )
    assert (trainer.grad_scaler is not None) == (precision == "fp16")
    trainer.train(0, 100)
    losses = _loss_values(trainer)
    assert _mean(losses[-10:]) < 0.1 * _mean(losses[:10])
    assert model.linear.weight.dtype == torch.float32  # autocast leaves the master weights in fp32


def test_amp_trainer_rejects_unknown_precision() -> None:
    model = ToyRegressor()
    with pytest.raises(ValueError, match="precision"):
        AMPTrainer(model, toy_loader(), torch.optim.SGD(model.parameters(), lr=0.1), precision="fp8")
