"""Schedule helpers (cosine / multistep with warmup) and gradient clipping."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from rcnnzoo.solver import (
    LRMultiplier,
    build_grad_clipper,
    build_lr_schedule,
    cosine_schedule,
    grad_clipper_from_config,
    multistep_schedule,
)

MAX_ITER = 100


def _lrs(schedule, base_lr: float = 1.0) -> list[float]:
    """The LR of each iteration, stepping the scheduler after every step as the LRScheduler hook does."""
    optimizer = torch.optim.SGD(nn.Linear(2, 1).parameters(), lr=base_lr)
    scheduler = LRMultiplier(optimizer, schedule, MAX_ITER)
    lrs = []
    for _ in range(MAX_ITER):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return lrs


def test_cosine_schedule_warms_up_then_follows_half_a_cosine() -> None:
    lrs = _lrs(cosine_schedule(MAX_ITER, warmup_iter=10, warmup_factor=0.01, final_value=0.0))
    assert lrs[0] == pytest.approx(0.01)
    assert lrs[:11] == sorted(lrs[:11])  # rising during warmup
    cosine = [0.5 * (1 + math.cos(math.pi * i / MAX_ITER)) for i in range(MAX_ITER)]
    assert lrs[10:] == pytest.approx(cosine[10:])  # the cosine keeps its own timeline after warmup
    assert lrs[10:] == sorted(lrs[10:], reverse=True) and lrs[-1] < 0.001


def test_cosine_schedule_final_value_and_no_warmup() -> None:
    lrs = _lrs(cosine_schedule(MAX_ITER, warmup_iter=0, final_value=0.1))
    assert lrs[0] == pytest.approx(1.0)
    assert lrs[-1] == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 99 / 100)))


def test_multistep_schedule_drops_at_iterations() -> None:
    lrs = _lrs(multistep_schedule(MAX_ITER, steps=(60, 80), gamma=0.1, warmup_iter=5, warmup_factor=0.1))
    assert lrs[0] == pytest.approx(0.1)
    assert lrs[5:60] == pytest.approx([1.0] * 55)
    assert lrs[60:80] == pytest.approx([0.1] * 20) and lrs[80:] == pytest.approx([0.01] * 20)


def test_build_lr_schedule_by_name_and_bad_arguments() -> None:
    assert _lrs(build_lr_schedule("cosine", max_iter=MAX_ITER, warmup_iter=10)) == _lrs(
        cosine_schedule(MAX_ITER, warmup_iter=10)
    )
    with pytest.raises(ValueError, match="Unknown LR schedule"):
        build_lr_schedule("exp", max_iter=MAX_ITER)
    with pytest.raises(ValueError, match="warmup_iter"):
        cosine_schedule(MAX_ITER, warmup_iter=MAX_ITER)
    with pytest.raises(ValueError, match="increasing"):
        multistep_schedule(MAX_ITER, steps=(80, 60))


def _params_with_grads(*grads: list[float]) -> list[nn.Parameter]:
    params = []
    for g in grads:
        p = nn.Parameter(torch.zeros(len(g)))
        p.grad = torch.tensor(g)
        params.append(p)
    return params


def test_clip_by_norm_scales_all_gradients_together_and_returns_the_norm() -> None:
    params = _params_with_grads([3.0, 0.0], [0.0, 4.0])  # total L2 norm 5
    norm = build_grad_clipper("norm", value=1.0)(params)
    assert float(norm) == pytest.approx(5.0)
    assert params[0].grad.tolist() == pytest.approx([0.6, 0.0], rel=1e-5)
    assert params[1].grad.tolist() == pytest.approx([0.0, 0.8], rel=1e-5)


def test_clip_by_value_clamps_each_element() -> None:
    params = _params_with_grads([3.0, -0.2, -7.0])
    assert build_grad_clipper("value", value=0.5)(params) is None
    assert params[0].grad.tolist() == pytest.approx([0.5, -0.2, -0.5])


def test_clipper_from_config_defaults_to_off_and_validates() -> None:
    assert grad_clipper_from_config(None) is None
    assert grad_clipper_from_config({}) is None
    assert grad_clipper_from_config({"enabled": False, "type": "norm", "value": 1.0}) is None
    assert grad_clipper_from_config({"type": "value", "value": 0.1}) is not None
    with pytest.raises(KeyError, match="max_norm"):
        grad_clipper_from_config({"max_norm": 1.0})
    with pytest.raises(ValueError, match="clip_type"):
        grad_clipper_from_config({"type": "l1"})
    with pytest.raises(ValueError, match="positive"):
        build_grad_clipper("norm", value=0.0)
