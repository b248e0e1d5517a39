"""TinyNet: shapes for custom widths, truncation, and that it learns from scratch."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from rcnnzoo.modeling.backbone import TinyNet


def test_widths_depths_and_strides():
    model = TinyNet(widths=(8, 16, 24, 32), depths=(1, 2, 1, 2))
    assert {n: (s.channels, s.stride) for n, s in model.output_shape().items()} == {
        "c2": (8, 4),
        "c3": (16, 8),
        "c4": (24, 16),
        "c5": (32, 32),
    }
    assert [len(stage) for stage in model.stages] == [1, 2, 1, 2]
    out = model(torch.randn(2, 3, 64, 32))
    assert out["c5"].shape == (2, 32, 2, 1)


def test_unused_stages_are_not_built():
    model = TinyNet(out_features=("c3",))
    assert len(model.stages) == 2 and list(model(torch.randn(1, 3, 32, 32))) == ["c3"]


def test_everything_trains_by_default():
    model = TinyNet()
    assert all(p.requires_grad for p in model.parameters())
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())


def test_learns_to_separate_two_patterns():
    torch.manual_seed(0)
    backbone = TinyNet(widths=(8, 8, 16, 16))
    head = nn.Linear(16, 2)
    # class 0: bright square top-left, class 1: bottom-right
    x = torch.zeros(8, 3, 32, 32)
    x[:4, :, 2:10, 2:10] = 1
    x[4:, :, 22:30, 22:30] = 1
    y = torch.tensor([0] * 4 + [1] * 4)
    opt = torch.optim.SGD([*backbone.parameters(), *head.parameters()], lr=0.1, momentum=0.9)
    losses = []
    for _ in range(15):
        loss = nn.functional.cross_entropy(head(backbone(x)["c5"].mean((2, 3))), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_bad_arguments():
    with pytest.raises(ValueError, match="4 positive widths"):
        TinyNet(widths=(8, 16))
    with pytest.raises(ValueError, match="needs a norm"):
        TinyNet(norm="")
