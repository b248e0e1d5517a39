"""get_default_optimizer_params: norm layers and biases get their own weight decay."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from rcnnzoo.solver import get_default_optimizer_params


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)
        self.bn = nn.BatchNorm2d(8)
        self.gn = nn.GroupNorm(2, 8)
        self.frozen = nn.Conv2d(8, 8, 1)
        self.frozen.requires_grad_(False)
        self.fc = nn.Linear(8, 2)
        self.ln = nn.LayerNorm(2)
        self.tied = self.fc  # the same module twice: its parameters must appear once


def _decay_of(optimizer: torch.optim.Optimizer) -> dict[int, float]:
    return {id(p): g["weight_decay"] for g in optimizer.param_groups for p in g["params"]}


def test_norm_parameters_get_their_own_decay_and_others_the_optimizers() -> None:
    net = _Net()
    optimizer = torch.optim.SGD(
        get_default_optimizer_params(net, weight_decay_norm=0.0), lr=0.1, weight_decay=1e-4
    )
    decay = _decay_of(optimizer)

    for norm in (net.bn, net.gn, net.ln):
        assert decay[id(norm.weight)] == 0.0 and decay[id(norm.bias)] == 0.0
    for p in (net.conv.weight, net.conv.bias, net.fc.weight, net.fc.bias):
        assert decay[id(p)] == 1e-4  # weight_decay=None: the optimizer's argument applies
    trainable = [p for p in net.parameters() if p.requires_grad]
    assert len(decay) == sum(len(g["params"]) for g in optimizer.param_groups) == len(trainable)
    assert id(net.frozen.weight) not in decay


def test_bias_decay_and_base_lr() -> None:
    net = _Net()
    groups = get_default_optimizer_params(
        net, base_lr=0.5, weight_decay=1e-3, weight_decay_norm=1e-5, weight_decay_bias=0.0
    )
    optimizer = torch.optim.SGD(groups, lr=0.1)
    decay = _decay_of(optimizer)
    assert decay[id(net.conv.weight)] == 1e-3 and decay[id(net.conv.bias)] == 0.0
    assert decay[id(net.bn.bias)] == 1e-5  # norm rule wins over the bias rule
    assert all(g["lr"] == 0.5 for g in optimizer.param_groups)
    assert len(groups) == 3  # one group per distinct setting, not per parameter


def test_weight_decay_norm_none_treats_norms_as_ordinary_weights() -> None:
    net = _Net()
    groups = get_default_optimizer_params(net, weight_decay=1e-4, weight_decay_norm=None)
    assert len(groups) == 1 and groups[0]["weight_decay"] == 1e-4


def test_model_is_required() -> None:
    with pytest.raises(TypeError, match=r"cfg.optimizer.params.model = model"):
        get_default_optimizer_params(None)  # type: ignore[arg-type]
