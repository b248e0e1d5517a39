"""instantiate: recursion, containers, string targets, and errors that name the failing node."""

from __future__ import annotations

import pytest
import torch
from omegaconf import DictConfig, ListConfig, OmegaConf

from rcnnzoo.config import ConfigError, L, instantiate
from rcnnzoo.layers import ShapeSpec
from rcnnzoo.modeling.backbone import BACKBONE_REGISTRY


class Leaf:
    def __init__(self, *, value: int = 0) -> None:
        self.value = value


class Tree:
    def __init__(self, *, left: Leaf, items: list, options: dict, name: str = "t") -> None:
        self.left, self.items, self.options, self.name = left, items, options, name


class Broken:
    def __init__(self, *, size: int) -> None:
        raise RuntimeError(f"size {size} is odd")


@BACKBONE_REGISTRY.register(name="_TestConfigLeafNet", force=True)
class LeafNet:
    def __init__(self, *, depth: int) -> None:
        self.depth = depth


def test_builds_nested_nodes_lists_and_dicts_as_plain_python():
    cfg = L(Tree)(
        left=L(Leaf)(value=1),
        items=[L(Leaf)(value=2), 3, {"k": L(Leaf)(value=4)}],
        options={"a": {"b": [1, 2]}},
    )
    tree = instantiate(cfg)
    assert isinstance(tree, Tree) and tree.name == "t"
    assert isinstance(tree.left, Leaf) and tree.left.value == 1
    assert type(tree.items) is list and tree.items[0].value == 2 and tree.items[1] == 3
    assert type(tree.items[2]) is dict and tree.items[2]["k"].value == 4
    assert tree.options == {"a": {"b": [1, 2]}}
    assert type(tree.options) is dict and type(tree.options["a"]["b"]) is list


def test_containers_without_target_become_dict_and_list():
    cfg = OmegaConf.create({"model": L(Leaf)(value=5), "steps": [1, 2], "lr": 0.1})
    out = instantiate(cfg)
    assert set(out) == {"model", "steps", "lr"}
    assert out["model"].value == 5 and out["steps"] == [1, 2] and out["lr"] == 0.1
    assert not isinstance(out["steps"], ListConfig)


def test_plain_dicts_primitives_and_built_objects():
    module = torch.nn.ReLU()
    assert instantiate({"_target_": Leaf, "value": 7}).value == 7
    assert instantiate(3) == 3 and instantiate("x") == "x" and instantiate(None) is None
    assert instantiate(module) is module
    assert instantiate(L(Tree)(left=module, items=[], options={})).left is module
    assert instantiate((L(Leaf)(), 1))[1] == 1


def test_overrides_replace_top_level_arguments():
    cfg = L(Tree)(left=L(Leaf)(value=1), items=[], options={})
    tree = instantiate(cfg, name="override", left=L(Leaf)(value=9))
    assert tree.name == "override" and tree.left.value == 9
    assert "name" not in cfg.keys()  # the config itself is untouched
    assert cfg.left.value == 1


def test_interpolations_are_resolved():
    cfg = OmegaConf.create({"n": 80, "head": L(Leaf)(value="${..n}")}, flags={"allow_objects": True})
    assert instantiate(cfg.head).value == 80


def test_import_path_target():
    conv = instantiate(L("torch.nn.Conv2d")(in_channels=3, out_channels=4, kernel_size=1))
    assert isinstance(conv, torch.nn.Conv2d) and conv.out_channels == 4


def test_registered_name_targets_plain_and_qualified():
    assert instantiate(L("_TestConfigLeafNet")(depth=18)).depth == 18
    assert isinstance(instantiate(L("BACKBONE:_TestConfigLeafNet")(depth=50)), LeafNet)


def test_unknown_registered_name_lists_close_matches():
    cfg = OmegaConf.create({"model": {"backbone": L("_TestConfigLeafNett")(depth=1)}})
    with pytest.raises(ConfigError) as info:
        instantiate(cfg)
    msg = str(info.value)
    assert "'model.backbone'" in msg and "_TestConfigLeafNett" in msg
    assert "Did you mean '_TestConfigLeafNet'" in msg
    assert isinstance(info.value.__cause__, KeyError)


def test_bad_import_path_names_the_missing_attribute():
    with pytest.raises(ConfigError, match="has no attribute 'Conv2D'.*Did you mean 'Conv2d'"):
        instantiate(L("torch.nn.Conv2D")())


def test_key_added_after_lazycall_fails_with_did_you_mean():
    cfg = OmegaConf.create({"model": {"head": L(Leaf)(value=1)}}, flags={"allow_objects": True})
    cfg.model.head.valeu = 3
    with pytest.raises(ConfigError) as info:
        instantiate(cfg)
    msg = str(info.value)
    assert "config node 'model.head'" in msg and "(target Leaf)" in msg
    assert "unknown argument 'valeu'. Did you mean 'value'?" in msg
    assert "Valid arguments: value" in msg


def test_error_names_innermost_path_target_and_original_text_once():
    cfg = OmegaConf.create(
        {"model": L(Tree)(left=L(Leaf)(), items=[L(Leaf)(), L(Broken)(size=3)], options={})},
        flags={"allow_objects": True},
    )
    with pytest.raises(ConfigError) as info:
        instantiate(cfg)
    msg = str(info.value)
    assert (
        msg == "Cannot instantiate config node 'model.items[1]' (target Broken): RuntimeError: size 3 is odd"
    )
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value.__cause__, RuntimeError)


def test_error_path_starts_from_the_nodes_place_in_its_root():
    cfg = OmegaConf.create(
        {"model": {"roi_heads": {"box_head": L(Broken)(size=1)}}}, flags={"allow_objects": True}
    )
    with pytest.raises(ConfigError, match=r"'model\.roi_heads\.box_head' \(target Broken\)"):
        instantiate(cfg.model.roi_heads)


def test_missing_value_names_its_key():
    cfg = OmegaConf.create({"model": L(Leaf)(value="???")}, flags={"allow_objects": True})
    with pytest.raises(ConfigError, match=r"'model\.value'.*MissingMandatoryValue"):
        instantiate(cfg)


def test_instantiate_does_not_modify_the_config():
    cfg = L(Tree)(left=L(Leaf)(value=1), items=[L(Leaf)()], options={"x": 1})
    before = OmegaConf.to_yaml(cfg)
    instantiate(cfg)
    assert OmegaConf.to_yaml(cfg) == before
    assert isinstance(cfg.left, DictConfig)


def test_dataclass_values_come_back_as_objects():
    # omegaconf turns a dataclass into a typed node; instantiate must hand the object back.
    cfg = L(Tree)(
        left=ShapeSpec(channels=8, stride=4), items=[ShapeSpec(channels=1)], options={"p2": ShapeSpec()}
    )
    tree = instantiate(cfg)
    assert tree.left == ShapeSpec(channels=8, stride=4)
    assert tree.items == [ShapeSpec(channels=1)] and tree.options == {"p2": ShapeSpec()}
