"""LazyConfig.apply_overrides: value parsing, strict keys, and deliberate additions."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf

from rcnnzoo.config import L, LazyConfig, instantiate


def make_cfg():
    return OmegaConf.create(
        {
            "model": {"backbone": L(torch.nn.Conv2d)(in_channels=3, out_channels=8, kernel_size=3)},
            "train": {"max_iter": 10, "lr": 0.1, "device": "cuda", "steps": [1, 2], "output": None},
        },
        flags={"allow_objects": True},
    )


@pytest.mark.parametrize(
    ("item", "key", "expected"),
    [
        ("train.max_iter=100", "max_iter", 100),
        ("train.lr=1e-3", "lr", 0.001),
        ("train.device=cpu", "device", "cpu"),
        ("train.device='cuda:1'", "device", "cuda:1"),
        ("train.steps=[3,4]", "steps", [3, 4]),
        ("train.output=None", "output", None),
        ("train.output=out/dir", "output", "out/dir"),
        ("train.max_iter=True", "max_iter", True),
        ("train.lr=a=b", "lr", "a=b"),
        # bare words in brackets are a list of strings, as Hydra reads them
        ("train.steps=[c3,c4]", "steps", ["c3", "c4"]),
        ("train.steps=[/data/p.npz]", "steps", ["/data/p.npz"]),
        ("train.steps=[a, 2]", "steps", ["a", 2]),
        ("train.steps=[]", "steps", []),
        ("train.output=[a,[b]", "output", "[a,[b]"),
    ],
)
def test_values_are_parsed_as_python_literals_or_kept_as_strings(item, key, expected):
    cfg = LazyConfig.apply_overrides(make_cfg(), [item])
    value = cfg.train[key]
    assert (list(value) if key == "steps" else value) == expected
    assert type(value if key != "steps" else list(value)) is type(expected)


def test_override_reaches_the_built_object_and_returns_cfg():
    cfg = make_cfg()
    assert LazyConfig.apply_overrides(cfg, ["model.backbone.out_channels=16"]) is cfg
    assert instantiate(cfg.model.backbone).out_channels == 16


def test_argument_left_at_its_default_can_be_set():
    cfg = LazyConfig.apply_overrides(make_cfg(), ["model.backbone.stride=2"])
    assert instantiate(cfg.model.backbone).stride == (2, 2)


def test_list_items_can_be_set_by_index():
    assert list(LazyConfig.apply_overrides(make_cfg(), ["train.steps.1=7"]).train.steps) == [1, 7]
    with pytest.raises(KeyError, match="not an index of a list of length 2"):
        LazyConfig.apply_overrides(make_cfg(), ["train.steps.5=7"])


def test_unknown_key_names_full_key_suggestion_and_valid_keys():
    with pytest.raises(KeyError) as info:
        LazyConfig.apply_overrides(make_cfg(), ["train.max_iters=5"])
    msg = info.value.args[0]
    assert "Cannot override 'train.max_iters'" in msg
    assert "Did you mean 'max_iter'?" in msg
    assert "Valid keys: max_iter, lr, device, steps, output" in msg
    assert "'+train.max_iters=...'" in msg


def test_unknown_intermediate_key_and_target_arguments_are_listed():
    with pytest.raises(KeyError, match="no key 'trian'.*Did you mean 'train'"):
        LazyConfig.apply_overrides(make_cfg(), ["trian.lr=1"])
    with pytest.raises(KeyError, match="Did you mean 'padding'.*Valid keys: _target_, in_channels"):
        LazyConfig.apply_overrides(make_cfg(), ["model.backbone.paddin=1"])


def test_plus_adds_new_keys_deliberately():
    cfg = LazyConfig.apply_overrides(make_cfg(), ["+train.seed=7", "+extra.nested.value='x'"])
    assert cfg.train.seed == 7 and cfg.extra.nested.value == "x"


def test_cannot_descend_into_a_value():
    with pytest.raises(KeyError, match="'train.lr' is a float, not a config node"):
        LazyConfig.apply_overrides(make_cfg(), ["train.lr.x=1"])


@pytest.mark.parametrize("item", ["train.lr", "=3", "train..lr=1", "+=1"])
def test_malformed_items_are_value_errors(item):
    with pytest.raises(ValueError, match="must look like 'a.b.c=value'"):
        LazyConfig.apply_overrides(make_cfg(), [item])
