"""The milestone hooks: timer, LR scheduler, periodic checkpointer, evaluation, periodic writer."""

from __future__ import annotations

import json
import os

import pytest
import torch
from engine_toys import ToyRegressor, toy_loader

from rcnnzoo.checkpoint import Checkpointer
from rcnnzoo.engine import (
    EvalHook,
    IterationTimer,
    LRScheduler,
    PeriodicCheckpointer,
    PeriodicWriter,
    SimpleTrainer,
)
from rcnnzoo.solver import LRMultiplier, MultiStepParamScheduler, WarmupParamScheduler
from rcnnzoo.utils.events import EventWriter, JSONWriter


def _trainer(lr: float = 0.05) -> SimpleTrainer:
    torch.manual_seed(0)
    model = ToyRegressor()
    return SimpleTrainer(model, toy_loader(), torch.optim.SGD(model.parameters(), lr=lr))


def _read_json_lines(path: str) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def test_iteration_timer_records_every_iteration() -> None:
    trainer = _trainer()
    trainer.register_hooks([IterationTimer()])
    trainer.train(0, 6)
    times = trainer.storage.history("time").values()
    assert [it for _, it in times] == list(range(6))
    assert all(t > 0 for t, _ in times)


def test_lr_scheduler_records_the_lr_used_then_steps() -> None:
    trainer = _trainer(lr=0.1)
    schedule = WarmupParamScheduler(
        MultiStepParamScheduler(values=[1.0, 0.1], milestones=[6], num_updates=10),
        warmup_factor=0.5,
        warmup_length=2 / 10,
    )
    trainer.register_hooks([LRScheduler(LRMultiplier(trainer.optimizer, schedule, max_iter=10))])
    trainer.train(0, 10)
    lrs = [lr for lr, _ in trainer.storage.history("lr").values()]
    # warmup 0.05 -> 0.1 over 2 iterations, then 0.1 until the milestone at 6, then 0.01
    expected = [0.05, 0.075] + [0.1] * 4 + [0.01] * 4
    assert lrs == pytest.approx(expected)


def test_periodic_checkpointer_names_and_final(tmp_path) -> None:
    trainer = _trainer()
    checkpointer = Checkpointer(trainer.model, str(tmp_path), optimizer=trainer.optimizer)
    trainer.register_hooks([PeriodicCheckpointer(checkpointer, period=3, max_iter=7)])
    trainer.train(0, 7)

    files = sorted(f for f in os.listdir(tmp_path) if f.endswith(".pth"))
    assert files == ["model_0000002.pth", "model_0000005.pth", "model_final.pth"]
    assert (tmp_path / "last_checkpoint").read_text() == "model_final.pth"
    final = torch.load(tmp_path / "model_final.pth", weights_only=True)
    assert final["iteration"] == 6 and set(final) == {"model", "optimizer", "iteration"}
    assert torch.equal(final["model"]["linear.weight"], trainer.model.linear.weight.detach())
    assert torch.load(tmp_path / "model_0000002.pth", weights_only=True)["iteration"] == 2


def test_eval_hook_runs_at_period_and_end_and_results_reach_metrics_json(tmp_path) -> None:
    trainer = _trainer()
    calls: list[int] = []

    def evaluate() -> dict:
        calls.append(trainer.iter)
        trainer.model.eval()  # a careless evaluation that does not restore train mode
        return {"toy": {"MAE": 1.0 / (trainer.iter + 1), "n": 3}}

    path = str(tmp_path / "metrics.json")
    # The writer is registered before the eval hook; its LOWEST priority still makes it run last.
    trainer.register_hooks([PeriodicWriter([JSONWriter(path)], period=2), EvalHook(4, evaluate)])
    trainer.train(0, 10)

    assert calls == [3, 7, 9]
    assert trainer.model.training
    lines = _read_json_lines(path)
    with_eval = {line["iteration"]: line["toy/MAE"] for line in lines if "toy/MAE" in line}
    assert with_eval == pytest.approx({3: 1 / 4, 7: 1 / 8, 9: 1 / 10})
    assert all(line["toy/n"] == 3 for line in lines if "toy/n" in line)


def test_eval_hook_rejects_non_numeric_results() -> None:
    trainer = _trainer()
    trainer.register_hooks([EvalHook(0, lambda: {"bbox": {"AP": "high"}})])
    with pytest.raises(ValueError, match="bbox/AP"):
        trainer.train(0, 2)


class _RecordingWriter(EventWriter):
    def __init__(self) -> None:
        self.writes: list[int] = []
        self.closed = False

    def write(self) -> None:
        from rcnnzoo.utils.events import get_event_storage

        self.writes.append(get_event_storage().iter)

    def close(self) -> None:
        self.closed = True


def test_periodic_writer_writes_at_period_and_last_then_closes() -> None:
    trainer = _trainer()
    writer = _RecordingWriter()
    trainer.register_hooks([PeriodicWriter([writer], period=4)])
    trainer.train(0, 10)
    assert writer.writes == [3, 7, 9, 9]  # periodic, last iteration, and the final flush in after_train
    assert writer.closed


def test_periodic_writer_requires_event_writers() -> None:
    with pytest.raises(TypeError, match="EventWriter"):
        PeriodicWriter([object()])  # type: ignore[list-item]


def test_periodic_checkpointer_keeps_only_the_newest(tmp_path) -> None:
    trainer = _trainer()
    (tmp_path / "model_0000000.pth").write_bytes(b"from an earlier run")
    checkpointer = Checkpointer(trainer.model, str(tmp_path))
    trainer.register_hooks([PeriodicCheckpointer(checkpointer, period=2, max_iter=10, max_to_keep=2)])
    trainer.train(0, 10)
    files = sorted(f for f in os.listdir(tmp_path) if f.endswith(".pth"))
    assert files == ["model_0000000.pth", "model_0000005.pth", "model_0000007.pth", "model_final.pth"]
