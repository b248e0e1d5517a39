"""Checkpointer: round trip, crash-safe saves, clear errors, strict shapes, the load report."""

from __future__ import annotations

import os

import pytest
import torch
from torch import nn

import rcnnzoo.checkpoint.checkpointer as checkpointer_module
from rcnnzoo.checkpoint import Checkpointer, CheckpointError
from rcnnzoo.solver import LRMultiplier, MultiStepParamScheduler


class _Unsafe:
    """An arbitrary Python object: torch.load(weights_only=True) must refuse to build it."""


def _net(out_features: int = 3) -> nn.Module:
    torch.manual_seed(out_features)
    return nn.Sequential(nn.Linear(4, out_features), nn.BatchNorm1d(out_features))


def _trained_state(tmp_path) -> tuple[nn.Module, torch.optim.Optimizer, LRMultiplier, Checkpointer]:
    model = _net()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    scheduler = LRMultiplier(
        optimizer, MultiStepParamScheduler(values=[1.0, 0.1], milestones=[5], num_updates=10), 10
    )
    for _ in range(6):
        model(torch.randn(8, 4)).sum().backward()
        optimizer.step()
        scheduler.step()
    return (
        model,
        optimizer,
        scheduler,
        Checkpointer(model, str(tmp_path), optimizer=optimizer, scheduler=scheduler),
    )


def test_save_and_resume_restore_model_optimizer_scheduler_iteration(tmp_path) -> None:
    model, optimizer, scheduler, checkpointer = _trained_state(tmp_path)
    checkpointer.save("model_0000005", iteration=5, note="kept")
    on_disk = torch.load(tmp_path / "model_0000005.pth", weights_only=True)
    assert {"model", "optimizer", "scheduler", "iteration", "note"} == set(on_disk)

    fresh = _net()
    fresh_opt = torch.optim.SGD(fresh.parameters(), lr=0.1, momentum=0.9)
    fresh_sched = LRMultiplier(
        fresh_opt, MultiStepParamScheduler(values=[1.0, 0.1], milestones=[5], num_updates=10), 10
    )
    report = Checkpointer(fresh, str(tmp_path), optimizer=fresh_opt, scheduler=fresh_sched).resume_or_load(
        "", resume=True
    )
    assert report.path == str(tmp_path / "model_0000005.pth")
    assert report.iteration == 5 and report.extra["note"] == "kept"
    assert sorted(report.loaded_checkpointables) == ["optimizer", "scheduler"]
    assert report.missing_keys == report.unexpected_keys == report.skipped_keys == []
    for key, value in model.state_dict().items():
        assert torch.equal(fresh.state_dict()[key], value), key
    assert fresh_sched.last_epoch == scheduler.last_epoch == 6
    assert fresh_opt.param_groups[0]["lr"] == pytest.approx(0.01)
    momentum = fresh_opt.state[fresh_opt.param_groups[0]["params"][0]]["momentum_buffer"]
    assert torch.equal(momentum, optimizer.state[optimizer.param_groups[0]["params"][0]]["momentum_buffer"])


def test_resume_false_loads_only_the_model_from_the_given_path(tmp_path) -> None:
    _, _, _, checkpointer = _trained_state(tmp_path)
    checkpointer.save("model_final", iteration=9)
    fresh = _net()
    fresh_opt = torch.optim.SGD(fresh.parameters(), lr=0.5)
    report = Checkpointer(fresh, str(tmp_path / "new_run"), optimizer=fresh_opt).resume_or_load(
        str(tmp_path / "model_final.pth"), resume=False
    )
    assert report.loaded_checkpointables == []
    assert fresh_opt.param_groups[0]["lr"] == 0.5 and not fresh_opt.state


def test_crash_before_rename_keeps_previous_checkpoint_and_pointer(tmp_path, monkeypatch) -> None:
    model, _, _, checkpointer = _trained_state(tmp_path)
    checkpointer.save("model_a", iteration=1)
    pointer_before = (tmp_path / "last_checkpoint").read_text()

    def crash(src: str, dst: str) -> None:
        raise OSError("simulated crash: the process dies before os.replace")

    with torch.no_grad():
        model[0].weight.add_(1.0)
    monkeypatch.setattr(checkpointer_module.os, "replace", crash)
    with pytest.raises(OSError, match="simulated crash"):
        checkpointer.save("model_a", iteration=2)  # overwrite attempt
    with pytest.raises(OSError, match="simulated crash"):
        checkpointer.save("model_b", iteration=2)  # new file attempt
    monkeypatch.undo()

    assert (tmp_path / "last_checkpoint").read_text() == pointer_before == "model_a.pth"
    assert not (tmp_path / "model_b.pth").exists()
    assert sorted(os.listdir(tmp_path)) == ["last_checkpoint", "model_a.pth"]  # no temp files left
    report = Checkpointer(_net(), str(tmp_path)).resume_or_load("", resume=True)
    assert report.iteration == 1


def test_crash_mid_write_leaves_the_old_file_readable(tmp_path, monkeypatch) -> None:
    model, _, _, checkpointer = _trained_state(tmp_path)
    checkpointer.save("model_final", iteration=3)
    real_save = torch.save

    def save_half_then_die(obj, f) -> None:
        real_save({"model": {}}, f)  # some bytes reach the temporary file ...
        raise KeyboardInterrupt  # ... then the job is killed

    monkeypatch.setattr(checkpointer_module.torch, "save", save_half_then_die)
    with pytest.raises(KeyboardInterrupt):
        checkpointer.save("model_final", iteration=4)
    monkeypatch.undo()
    loaded = torch.load(tmp_path / "model_final.pth", weights_only=True)
    assert loaded["iteration"] == 3 and torch.equal(loaded["model"]["0.weight"], model[0].weight.detach())


def test_missing_file_names_the_path(tmp_path) -> None:
    path = str(tmp_path / "nope.pth")
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        Checkpointer(_net()).load(path)


@pytest.mark.parametrize("keep", [0, 10, 0.5])
def test_corrupt_or_truncated_file_says_so_and_names_the_path(tmp_path, keep: float) -> None:
    good = tmp_path / "good.pth"
    torch.save({"model": _net().state_dict()}, good)
    data = good.read_bytes()
    bad = tmp_path / "bad.pth"
    bad.write_bytes(data[: int(len(data) * keep)] if isinstance(keep, float) else data[:keep])
    with pytest.raises(CheckpointError, match=r"bad\.pth is corrupt or truncated"):
        Checkpointer(_net()).load(str(bad))


def test_garbage_file_is_reported_corrupt(tmp_path) -> None:
    bad = tmp_path / "garbage.pth"
    bad.write_bytes(b"not a checkpoint" * 50)
    with pytest.raises(CheckpointError, match="garbage.pth is corrupt"):
        Checkpointer(_net()).load(str(bad))


def test_plain_pickle_gets_a_hint_to_convert_it(tmp_path) -> None:
    """A detectron2 .pkl given as weights: said to be converted, not called corrupt, never unpickled."""
    import pickle

    import numpy as np

    pkl = tmp_path / "model_final_f10217.pkl"
    with open(pkl, "wb") as f:
        pickle.dump({"model": {"linear.weight": np.zeros((3, 4), np.float32)}, "__author__": "Detectron2"}, f)
    with pytest.raises(CheckpointError, match=r"model_final_f10217\.pkl is a plain pickle.*convert_checkpoint"):
        Checkpointer(_net()).load(str(pkl))
    # torch.save's pre-zip format is a pickle too, and still loads
    legacy = tmp_path / "legacy.pth"
    torch.save({"model": _net().state_dict()}, legacy, _use_new_zipfile_serialization=False)
    Checkpointer(_net()).load(str(legacy))


def test_loading_uses_weights_only_and_refuses_arbitrary_objects(tmp_path, monkeypatch) -> None:
    path = tmp_path / "unsafe.pth"
    torch.save({"model": _net().state_dict(), "payload": _Unsafe()}, path)
    with pytest.raises(CheckpointError, match="unsafe.pth contains Python objects"):
        Checkpointer(_net()).load(str(path))

    calls = []
    real_load = torch.load

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return real_load(*args, **kwargs)

    torch.save({"model": _net().state_dict()}, tmp_path / "ok.pth")
    monkeypatch.setattr(checkpointer_module.torch, "load", spy)
    Checkpointer(_net()).load(str(tmp_path / "ok.pth"))
    assert calls == [{"map_location": "cpu", "weights_only": True}]


def test_shape_mismatch_is_an_error_naming_keys_and_shapes(tmp_path) -> None:
    Checkpointer(_net(3), str(tmp_path)).save("three")
    with pytest.raises(CheckpointError) as info:
        Checkpointer(_net(5)).load(str(tmp_path / "three.pth"))
    message = str(info.value)
    assert "0.weight: (3, 4) in checkpoint, (5, 4) in model" in message
    assert "0.bias: (3,) in checkpoint, (5,) in model" in message
    assert "allow_shape_mismatch=True" in message


def test_allow_shape_mismatch_skips_and_reports(tmp_path) -> None:
    source = _net(3)
    Checkpointer(source, str(tmp_path)).save("three")
    target = nn.Sequential(nn.Linear(4, 5), nn.BatchNorm1d(3))  # head resized, norm layer compatible
    before = target[0].weight.detach().clone()
    report = Checkpointer(target).load(str(tmp_path / "three.pth"), allow_shape_mismatch=True)
    assert [k for k, _, _ in report.skipped_keys] == ["0.weight", "0.bias"]
    assert report.skipped_keys[0] == ("0.weight", (3, 4), (5, 4))
    assert torch.equal(target[0].weight, before)  # skipped, not partially copied
    assert torch.equal(target[1].weight, source[1].weight)  # the rest loaded


def test_report_lists_missing_and_unexpected_keys(tmp_path) -> None:
    torch.save(
        {"model": {"0.weight": torch.zeros(3, 4), "extra.weight": torch.ones(1)}}, tmp_path / "partial.pth"
    )
    report = Checkpointer(_net(3)).load(str(tmp_path / "partial.pth"))
    assert report.unexpected_keys == ["extra.weight"]
    assert "0.bias" in report.missing_keys and "0.weight" not in report.missing_keys


class _Wrapper(nn.Module):
    """Stands in for DistributedDataParallel: parameters under a "module." prefix."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module


def test_saved_keys_are_plain_and_prefixed_checkpoints_load(tmp_path) -> None:
    model = _net()
    Checkpointer(_Wrapper(model), str(tmp_path)).save("wrapped")
    saved = torch.load(tmp_path / "wrapped.pth", weights_only=True)["model"]
    assert set(saved) == set(model.state_dict())  # no "module." prefix

    torch.save({"model": _Wrapper(model).state_dict()}, tmp_path / "ddp_style.pth")
    fresh = _net(3)
    with torch.no_grad():
        fresh[0].weight.zero_()
    report = Checkpointer(fresh).load(str(tmp_path / "ddp_style.pth"))
    assert report.missing_keys == [] and torch.equal(fresh[0].weight, model[0].weight)


def test_checkpoint_without_model_entry_is_explained(tmp_path) -> None:
    torch.save(_net().state_dict(), tmp_path / "bare.pth")
    with pytest.raises(CheckpointError, match="no 'model' entry"):
        Checkpointer(_net()).load(str(tmp_path / "bare.pth"))


def test_save_to_disk_false_writes_nothing(tmp_path) -> None:
    Checkpointer(_net(), str(tmp_path), save_to_disk=False).save("model_final")
    assert os.listdir(tmp_path) == []
