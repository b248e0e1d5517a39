"""WarmupParamScheduler + LRMultiplier against hand-computed learning rates."""

from __future__ import annotations

import io

import pytest
import torch
from torch import nn

from rcnnzoo.solver import LRMultiplier, MultiStepParamScheduler, WarmupParamScheduler

BASE_LR = 0.02
MAX_ITER = 100


def _schedule(method: str = "linear") -> WarmupParamScheduler:
    # milestones at 60 and 80 of 100 iterations, 10 warmup iterations starting at 0.001 x
    return WarmupParamScheduler(
        MultiStepParamScheduler(values=[1.0, 0.1, 0.01], milestones=[60, 80], num_updates=MAX_ITER),
        warmup_factor=0.001,
        warmup_length=10 / MAX_ITER,
        warmup_method=method,
    )


def _lrs(schedule: WarmupParamScheduler, iters: int = MAX_ITER) -> list[float]:
    """The LR each iteration's optimizer.step() uses, stepping the scheduler as the hook does."""
    optimizer = torch.optim.SGD(nn.Linear(2, 1).parameters(), lr=BASE_LR)
    scheduler = LRMultiplier(optimizer, schedule, MAX_ITER)
    lrs = []
    for _ in range(iters):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return lrs


def test_linear_warmup_then_multistep_hand_computed() -> None:
    lrs = _lrs(_schedule())
    # warmup: 0.02 * (0.001 + (1 - 0.001) * i / 10)
    assert lrs[0] == pytest.approx(0.02 * 0.001)
    assert lrs[1] == pytest.approx(0.02 * (0.001 + 0.999 * 0.1))
    assert lrs[5] == pytest.approx(0.02 * 0.5005)
    assert lrs[9] == pytest.approx(0.02 * (0.001 + 0.999 * 0.9))
    assert lrs[10] == pytest.approx(0.02)
    assert lrs[59] == pytest.approx(0.02)
    assert lrs[60] == pytest.approx(0.002)
    assert lrs[79] == pytest.approx(0.002)
    assert lrs[80] == pytest.approx(0.0002)
    assert lrs[99] == pytest.approx(0.0002)


def test_constant_warmup_holds_the_start_value() -> None:
    lrs = _lrs(_schedule("constant"), iters=12)
    assert lrs[:10] == pytest.approx([0.02 * 0.001] * 10)
    assert lrs[10:] == pytest.approx([0.02, 0.02])


def test_multiplier_holds_its_final_value_past_max_iter() -> None:
    lrs = _lrs(_schedule(), iters=MAX_ITER + 5)  # e.g. max_iter raised on resume; no error past 1.0
    assert lrs[MAX_ITER:] == pytest.approx([0.0002] * 5)


def test_scheduler_state_round_trips_through_a_weights_only_load() -> None:
    optimizer = torch.optim.SGD(nn.Linear(2, 1).parameters(), lr=BASE_LR)
    scheduler = LRMultiplier(optimizer, _schedule(), MAX_ITER)
    for _ in range(65):
        optimizer.step()
        scheduler.step()
    buffer = io.BytesIO()
    torch.save(scheduler.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)  # no fvcore objects inside

    fresh_opt = torch.optim.SGD(nn.Linear(2, 1).parameters(), lr=BASE_LR)
    fresh = LRMultiplier(fresh_opt, _schedule(), MAX_ITER)
    fresh.load_state_dict(state)
    assert fresh.last_epoch == 65
    fresh_opt.step()
    fresh.step()
    assert fresh_opt.param_groups[0]["lr"] == pytest.approx(0.002)


@pytest.mark.parametrize("length", [-0.1, 1.0, 1000])
def test_warmup_length_must_be_a_fraction(length: float) -> None:
    with pytest.raises(ValueError, match="fraction of training"):
        WarmupParamScheduler(MultiStepParamScheduler(values=[1.0], num_updates=10), 0.1, length)


def test_unknown_warmup_method_and_uninstantiated_multiplier_are_rejected() -> None:
    with pytest.raises(ValueError, match="warmup_method"):
        WarmupParamScheduler(MultiStepParamScheduler(values=[1.0], num_updates=10), 0.1, 0.1, "cosine")
    optimizer = torch.optim.SGD(nn.Linear(2, 1).parameters(), lr=BASE_LR)
    with pytest.raises(TypeError, match="ParamScheduler"):
        LRMultiplier(optimizer, {"_target_": "x"}, MAX_ITER)  # type: ignore[arg-type]
