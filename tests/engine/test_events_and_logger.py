"""EventStorage, the metric writers and setup_logger."""

from __future__ import annotations

import json
import logging
import os
import statistics

import pytest
from engine_toys import captured_log

from rcnnzoo.utils.events import (
    CommonMetricPrinter,
    EventStorage,
    JSONWriter,
    TensorboardWriter,
    get_event_storage,
)
from rcnnzoo.utils.logger import setup_logger


def test_storage_smooths_only_hinted_scalars() -> None:
    with EventStorage() as storage:
        for it, value in enumerate([1.0, 2.0, 100.0]):
            storage.iter = it
            storage.put_scalar("loss", value)
            storage.put_scalar("lr", value, smoothing_hint=False)
        assert storage.latest() == {"loss": (100.0, 2), "lr": (100.0, 2)}
        smoothed = storage.latest_with_smoothing_hint(window_size=3)
        assert smoothed["loss"] == (2.0, 2)  # median, robust to the spike
        assert smoothed["lr"] == (100.0, 2)
        assert storage.history("loss").avg(2) == 51.0


def test_storage_rejects_a_changed_smoothing_hint() -> None:
    storage = EventStorage()
    storage.put_scalar("bbox/AP", 1.0, smoothing_hint=False)
    with pytest.raises(ValueError, match="bbox/AP"):
        storage.put_scalar("bbox/AP", 2.0)


def test_get_event_storage_outside_and_nested() -> None:
    with pytest.raises(RuntimeError, match="EventStorage"):
        get_event_storage()
    with EventStorage() as outer:
        with EventStorage(start_iter=5) as inner:
            assert get_event_storage() is inner
            inner.put_scalars(a=1, b=2)
            assert inner.latest()["a"] == (1.0, 5)
        assert get_event_storage() is outer


def test_history_of_unknown_name_lists_the_recorded_ones() -> None:
    storage = EventStorage()
    storage.put_scalar("loss_cls", 1.0)
    with pytest.raises(KeyError, match="loss_cls"):
        storage.history("loss_box")


def _record_iterations(storage: EventStorage, iterations: range) -> None:
    for it in iterations:
        storage.iter = it
        storage.put_scalars(total_loss=1.0 / (it + 1), loss_rpn_cls=0.5)
        storage.put_scalar("lr", 0.02, smoothing_hint=False)
        storage.put_scalar("time", 0.25)


def test_json_writer_writes_one_valid_line_per_new_iteration(tmp_path) -> None:
    path = tmp_path / "out" / "metrics.json"
    with EventStorage() as storage:
        writer = JSONWriter(str(path), window_size=1)
        _record_iterations(storage, range(0, 3))
        writer.write()
        storage.put_scalar("bbox/AP", float("nan"), smoothing_hint=False)
        _record_iterations(storage, range(3, 5))
        writer.write()
        writer.write()  # nothing new: no duplicate line
        writer.close()

    lines = path.read_text().splitlines()
    records = [json.loads(line) for line in lines]  # every line is standalone JSON
    assert [r["iteration"] for r in records] == [2, 2, 4]
    assert set(records[0]) == set(records[2]) == {"iteration", "total_loss", "loss_rpn_cls", "lr", "time"}
    assert records[2]["total_loss"] == pytest.approx(1 / 5)
    # recorded late for the already written iteration 2: not lost, but a line of its own;
    # NaN becomes null, keeping the line valid JSON
    assert records[1] == {"iteration": 2, "bbox/AP": None}
    assert "NaN" not in path.read_text()


def test_json_writer_appends_across_runs(tmp_path) -> None:
    path = str(tmp_path / "metrics.json")
    for iterations in (range(0, 2), range(2, 4)):
        with EventStorage(iterations.start) as storage:
            writer = JSONWriter(path)
            _record_iterations(storage, iterations)
            writer.write()
            writer.close()
    with open(path, encoding="utf-8") as f:
        assert [json.loads(line)["iteration"] for line in f] == [1, 3]


def test_metric_printer_line_has_eta_losses_and_timings() -> None:
    with EventStorage() as storage, captured_log("rcnnzoo.utils.events") as messages:
        printer = CommonMetricPrinter(max_iter=100)
        _record_iterations(storage, range(10))
        storage.put_scalar("data_time", 0.01)
        printer.write()
        printer.write()  # same iteration: not printed twice
    assert len(messages) == 1
    line = messages[0]
    # median time 0.25 s x (100 - 9 - 1) iterations left = 22 s
    assert line.startswith("eta: 0:00:22  iter: 9/100")
    assert "total_loss: 0.1" in line and "loss_rpn_cls: 0.5" in line
    assert "time: 0.2500" in line and "data_time: 0.0100" in line and "lr: 0.02" in line
    assert line.index("total_loss") < line.index("loss_rpn_cls")


def test_metric_printer_without_timer_uses_wall_clock() -> None:
    with EventStorage() as storage, captured_log("rcnnzoo.utils.events") as messages:
        printer = CommonMetricPrinter(max_iter=50)
        storage.put_scalar("total_loss", 1.0)
        printer.write()
        storage.iter = 10
        storage.put_scalar("total_loss", 0.5)
        printer.write()
    assert "eta" not in messages[0]  # nothing to estimate from yet
    assert messages[1].startswith("eta: ")


def test_tensorboard_writer_writes_scalars(tmp_path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    with EventStorage() as storage:
        writer = TensorboardWriter(str(tmp_path), window_size=1)
        _record_iterations(storage, range(3))
        writer.write()
        writer.close()
    events = EventAccumulator(str(tmp_path))
    events.Reload()
    scalars = events.Scalars("total_loss")
    assert [(s.step, round(s.value, 4)) for s in scalars] == [(2, round(1 / 3, 4))]


def test_tensorboard_writer_writes_queued_images(tmp_path) -> None:
    import numpy as np
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    with EventStorage(start_iter=7) as storage:
        writer = TensorboardWriter(str(tmp_path))
        storage.put_image("predictions/a", np.full((8, 12, 3), 200, dtype=np.uint8))
        writer.write()
        writer.write()  # an image is written once
        writer.close()
    events = EventAccumulator(str(tmp_path), size_guidance={"images": 0})
    events.Reload()
    images = events.Images("predictions/a")
    assert [(i.step, i.width, i.height) for i in images] == [(7, 12, 8)]


def test_training_run_writes_loss_scalars_tensorboard_can_read(tmp_path) -> None:
    """The default writers of a real training loop, read back with TensorBoard's own reader."""
    import torch
    from engine_toys import ToyRegressor, toy_loader
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from rcnnzoo.engine import IterationTimer, LRScheduler, PeriodicWriter, SimpleTrainer, default_writers
    from rcnnzoo.solver import ConstantParamScheduler, LRMultiplier

    torch.manual_seed(0)
    model = ToyRegressor()
    trainer = SimpleTrainer(model, toy_loader(), torch.optim.SGD(model.parameters(), lr=0.05))
    scheduler = LRMultiplier(trainer.optimizer, ConstantParamScheduler(1.0), max_iter=6)
    writers = default_writers(str(tmp_path), max_iter=6)
    trainer.register_hooks([IterationTimer(), LRScheduler(scheduler), PeriodicWriter(writers, period=2)])
    trainer.train(0, 6)

    events = EventAccumulator(str(tmp_path))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"total_loss", "loss_mse", "loss_l1", "lr", "time", "data_time"} <= tags
    steps = [e.step for e in events.Scalars("loss_mse")]
    assert steps == [1, 3, 5]  # every period, once each
    # TensorBoard holds the writer's smoothed value: the median of the storage's window
    for event in events.Scalars("total_loss"):
        history = [v for v, it in trainer.storage.history("total_loss").values() if it <= event.step]
        assert event.value == pytest.approx(statistics.median(history), rel=1e-5)
    assert events.Scalars("lr")[0].value == pytest.approx(0.05)


@pytest.mark.usefixtures("restore_loggers")
def test_setup_logger_is_idempotent_and_writes_log_file(tmp_path) -> None:
    first = setup_logger(str(tmp_path / "a"), name="rcnnzoo")
    n_handlers = len(first.handlers)
    second = setup_logger(str(tmp_path / "a"), name="rcnnzoo")
    assert second is first and len(second.handlers) == n_handlers

    logging.getLogger("rcnnzoo.engine.some_module").warning("disk almost full")
    log_file = tmp_path / "a" / "log.txt"
    assert "rcnnzoo.engine.some_module WARNING: disk almost full" in log_file.read_text()

    setup_logger(str(tmp_path / "b"), name="rcnnzoo")  # a new run in the same process
    assert len(first.handlers) == n_handlers
    logging.getLogger("rcnnzoo").info("second run")
    assert "second run" in (tmp_path / "b" / "log.txt").read_text()
    assert "second run" not in log_file.read_text()


@pytest.mark.usefixtures("restore_loggers")
def test_setup_logger_other_ranks_log_to_their_own_file_only(tmp_path) -> None:
    log = setup_logger(str(tmp_path), name="rcnnzoo", distributed_rank=2)
    assert all(
        isinstance(h, logging.FileHandler) for h in log.handlers if getattr(h, "_rcnnzoo_handler", None)
    )
    log.info("from rank 2")
    assert os.path.exists(tmp_path / "log.txt.rank2")
