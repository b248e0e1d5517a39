"""Deferred arguments: a parent builds a child itself, with shapes it inferred, via build_part."""

from __future__ import annotations

import pytest
from omegaconf import DictConfig, OmegaConf

from rcnnzoo.config import ConfigError, L, build_part, instantiate
from rcnnzoo.layers import ShapeSpec


class BoxHead:
    def __init__(self, *, input_shape: ShapeSpec, fc_dim: int = 1024) -> None:
        self.input_shape, self.fc_dim = input_shape, fc_dim


class FixedHead:
    """Takes no shape: the parent's inferred kwargs must be filtered out."""

    def __init__(self, *, fc_dim: int = 8) -> None:
        self.fc_dim = fc_dim


class FlexibleHead:
    def __init__(self, **kwargs) -> None:
        self.kwargs = kwargs


class BrokenHead:
    def __init__(self, *, input_shape: ShapeSpec) -> None:
        raise ValueError(f"cannot use {input_shape.channels} channels")


class RoIHeads:
    _deferred_args_ = ("box_head",)

    def __init__(self, *, box_head, in_channels: int = 256, pooler_resolution: int = 7) -> None:
        self.received = box_head
        pooled = ShapeSpec(channels=in_channels, height=pooler_resolution, width=pooler_resolution)
        self.box_head = build_part(box_head, input_shape=pooled, unrelated=1)


def test_deferred_child_arrives_unbuilt_and_is_built_with_inferred_shape():
    heads = instantiate(L(RoIHeads)(box_head=L(BoxHead)(fc_dim=512), in_channels=64))
    assert isinstance(heads.received, DictConfig)  # the node itself, not an object
    assert isinstance(heads.box_head, BoxHead)
    assert heads.box_head.input_shape == ShapeSpec(channels=64, height=7, width=7)
    assert heads.box_head.fc_dim == 512


def test_explicit_config_value_wins_over_inferred():
    explicit = ShapeSpec(channels=3, height=1, width=1)
    heads = instantiate(L(RoIHeads)(box_head=L(BoxHead)(input_shape=explicit)))
    assert heads.box_head.input_shape == explicit


def test_missing_value_is_filled_by_inferred():
    heads = instantiate(L(RoIHeads)(box_head=L(BoxHead)(input_shape="???")))
    assert heads.box_head.input_shape.channels == 256


def test_only_accepted_inferred_kwargs_are_passed():
    assert instantiate(L(RoIHeads)(box_head=L(FixedHead)())).box_head.fc_dim == 8
    flexible = instantiate(L(RoIHeads)(box_head=L(FlexibleHead)())).box_head
    assert set(flexible.kwargs) == {"input_shape", "unrelated"}


def test_built_object_or_none_passes_through():
    head = BoxHead(input_shape=ShapeSpec(channels=1))
    assert RoIHeads(box_head=head).box_head is head  # direct construction, no config at all
    assert instantiate(L(RoIHeads)(box_head=None)).box_head is None
    assert build_part(None, input_shape=1) is None


def test_plain_dict_node_and_plain_data_containers():
    part = {"_target_": BoxHead, "fc_dim": 2}
    assert build_part(part, input_shape=ShapeSpec(channels=5)).input_shape.channels == 5
    data = OmegaConf.create({"a": [1, 2]})
    assert build_part(data) == {"a": [1, 2]} and type(build_part(data)) is dict


def test_container_of_nodes_must_be_built_item_by_item():
    with pytest.raises(TypeError, match="call build_part on each item"):
        build_part([L(BoxHead)(), L(FixedHead)()], input_shape=ShapeSpec())


def test_error_in_deferred_child_names_its_path_once():
    cfg = OmegaConf.create(
        {"model": {"roi_heads": L(RoIHeads)(box_head=L(BrokenHead)(), in_channels=5)}},
        flags={"allow_objects": True},
    )
    with pytest.raises(ConfigError) as info:
        instantiate(cfg)
    assert str(info.value) == (
        "Cannot instantiate config node 'model.roi_heads.box_head' (target BrokenHead): "
        "ValueError: cannot use 5 channels"
    )
    assert isinstance(info.value.__cause__, ValueError)


def test_error_path_known_for_plain_dict_configs_too():
    cfg = {"model": {"_target_": RoIHeads, "box_head": {"_target_": BrokenHead}}}
    with pytest.raises(ConfigError, match=r"'model\.box_head' \(target BrokenHead\)"):
        instantiate(cfg)


def test_build_part_outside_instantiate_uses_the_attached_path():
    cfg = OmegaConf.create({"model": {"head": L(BoxHead)()}}, flags={"allow_objects": True})
    cfg.model.head.bad = 1
    with pytest.raises(ConfigError, match=r"'model\.head' \(target BoxHead\).*unknown argument 'bad'"):
        build_part(cfg.model.head, input_shape=ShapeSpec())
