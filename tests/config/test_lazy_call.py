"""LazyCall: what a node looks like, and argument checking when the config is written."""

from __future__ import annotations

import pytest
import torch
from omegaconf import DictConfig

from rcnnzoo.config import L, LazyCall


class Neck:
    def __init__(self, *, in_features: list[str], out_channels: int = 256, norm: str = "") -> None:
        self.in_features, self.out_channels, self.norm = in_features, out_channels, norm


def make_anything(**kwargs):
    return kwargs


def test_node_is_a_dictconfig_holding_the_target_object():
    node = L(Neck)(in_features=["res4"], out_channels=128)
    assert isinstance(node, DictConfig)
    assert node._target_ is Neck  # the class itself, not a string: go-to-definition works
    assert node.out_channels == 128
    assert list(node.in_features) == ["res4"]
    assert LazyCall is L


def test_objects_can_be_stored_as_arguments():
    weight = torch.ones(2)
    node = L(make_anything)(fn=torch.relu, cls=torch.nn.ReLU, tensor=weight)
    assert node.fn is torch.relu and node.cls is torch.nn.ReLU and node.tensor is weight


def test_unknown_argument_fails_at_lazycall_time_with_suggestion():
    with pytest.raises(TypeError) as info:
        L(Neck)(in_features=["res4"], out_chanels=128)
    msg = str(info.value)
    assert msg.startswith("LazyCall(Neck): unknown argument 'out_chanels'.")
    assert "Did you mean 'out_channels'?" in msg
    assert "Valid arguments: in_features, out_channels, norm" in msg


def test_unknown_argument_of_a_torch_class_is_caught():
    with pytest.raises(TypeError, match="Did you mean 'kernel_size'"):
        L(torch.nn.Conv2d)(in_channels=3, out_channels=8, kernal_size=3)


def test_var_keyword_targets_accept_anything():
    assert L(make_anything)(whatever=1).whatever == 1


def test_string_targets_are_not_checked_or_resolved_when_written():
    # Resolution waits for instantiate, so a config never imports what it names.
    assert L("NoSuchPartYet")(x=1)._target_ == "NoSuchPartYet"
    assert L("BACKBONE:NoSuchPartYet")()._target_ == "BACKBONE:NoSuchPartYet"
    assert L("no.such.module.Cls")(y=2).y == 2


@pytest.mark.parametrize("bad", [3, None, ["Neck"], torch.zeros(1)])
def test_non_callable_non_string_target_is_a_type_error(bad):
    with pytest.raises(TypeError, match="LazyCall expects a class, a function"):
        L(bad)


def test_missing_required_arguments_are_allowed_until_instantiate():
    # Required arguments may be filled later by overrides or inferred by a parent.
    node = L(Neck)()
    assert set(node.keys()) == {"_target_"}
