"""LazyConfig.save: YAML that loads back and instantiates to equal objects."""

from __future__ import annotations

import os

import pytest
import torch
from omegaconf import OmegaConf

from rcnnzoo.config import ConfigError, L, LazyConfig, instantiate
from rcnnzoo.layers import ShapeSpec


def make_cfg():
    return OmegaConf.create(
        {
            "model": L(torch.nn.Conv2d)(in_channels=3, out_channels=8, kernel_size=3, padding=1),
            "act": torch.nn.ReLU,  # a class as a value, not as a target
            "pool": L("torch.nn.MaxPool2d")(kernel_size=2),
            "shape": ShapeSpec(channels=256, stride=4),
            "train": {"max_iter": 10, "lr": 1e-3, "steps": (5, 8), "name": "None", "interp": "${.max_iter}"},
        },
        flags={"allow_objects": True},
    )


def test_round_trip_instantiates_equal_objects(tmp_path):
    cfg = make_cfg()
    LazyConfig.save(cfg, tmp_path / "cfg.yaml")
    text = (tmp_path / "cfg.yaml").read_text()
    assert "_target_: torch.nn.modules.conv.Conv2d" in text
    loaded = LazyConfig.load(tmp_path / "cfg.yaml")

    torch.manual_seed(0)
    original = instantiate(cfg.model)
    torch.manual_seed(0)
    restored = instantiate(loaded.model)
    assert type(restored) is torch.nn.Conv2d
    assert restored.kernel_size == original.kernel_size and restored.padding == original.padding
    assert torch.equal(restored.weight, original.weight)

    assert instantiate(loaded.act) is torch.nn.ReLU
    assert isinstance(instantiate(loaded.pool), torch.nn.MaxPool2d)
    assert instantiate(loaded.shape) == ShapeSpec(channels=256, stride=4)
    assert instantiate(loaded.train) == {
        "max_iter": 10,
        "lr": 1e-3,
        "steps": [5, 8],
        "name": "None",
        "interp": 10,
    }


def test_saved_config_is_stable_under_a_second_round_trip(tmp_path):
    LazyConfig.save(make_cfg(), tmp_path / "a.yaml")
    LazyConfig.save(LazyConfig.load(tmp_path / "a.yaml"), tmp_path / "b.yaml")
    assert (tmp_path / "a.yaml").read_text() == (tmp_path / "b.yaml").read_text()


def test_save_replaces_atomically_and_leaves_no_temp_file(tmp_path):
    target = tmp_path / "out" / "cfg.yaml"
    LazyConfig.save({"a": 1}, target)
    LazyConfig.save({"a": 2}, target)
    assert LazyConfig.load(target).a == 2
    assert os.listdir(target.parent) == ["cfg.yaml"]


def test_unserializable_value_names_its_key_and_keeps_the_old_file(tmp_path):
    target = tmp_path / "cfg.yaml"
    LazyConfig.save({"a": 1}, target)
    cfg = OmegaConf.create(
        {"model": L(torch.nn.Linear)(in_features=2, out_features=2)}, flags={"allow_objects": True}
    )
    cfg.model.init = torch.zeros(2)
    with pytest.raises(ConfigError, match=r"Cannot save config key 'model\.init': a Tensor"):
        LazyConfig.save(cfg, target)
    assert LazyConfig.load(target).a == 1
    assert os.listdir(tmp_path) == ["cfg.yaml"]


def test_local_class_cannot_be_saved(tmp_path):
    class Local:
        pass

    with pytest.raises(ConfigError, match=r"'head\._target_'.*cannot be imported back"):
        LazyConfig.save({"head": L(Local)()}, tmp_path / "cfg.yaml")
