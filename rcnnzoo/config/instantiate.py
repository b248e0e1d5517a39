"""``instantiate``: build the objects a config describes; ``build_part``: build a deferred child.

Deferred arguments. A class that needs shape information before it can build a child (a head
needs the pooled feature shape) lists that argument in a class attribute::

    class StandardRoIHeads(nn.Module):
        _deferred_args_ = ("box_head",)

        def __init__(self, *, box_head, pooler, ...):
            pooled = ShapeSpec(channels=..., height=7, width=7)
            self.box_head = build_part(box_head, input_shape=pooled)

``instantiate`` then passes ``box_head`` unbuilt (the config node), and ``build_part`` builds it with
the inferred kwargs the config did not set. Passing an already-built module works too.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from typing import Any

from omegaconf import Container, DictConfig, ListConfig, OmegaConf

from .errors import ConfigError, error_text
from .lazy_call import accepted_arguments, check_arguments, resolve_target, target_name

__all__ = ["instantiate", "build_part", "is_config", "config_path"]

# id(deferred child) -> its config path, while its parent's constructor runs, so that
# build_part can name the node even when it is a plain dict or a detached DictConfig.
_DEFERRED_PATHS: ContextVar[dict[int, str] | None] = ContextVar("rcnnzoo_deferred_paths", default=None)


def instantiate(cfg: Any, **overrides: Any) -> Any:
    """Build the objects described by ``cfg``, recursively.

    * a mapping with ``_target_`` is called with its other entries as keyword arguments, built
      first (plain ``dict``/``list``, never ``DictConfig``), except the target's ``_deferred_args_``,
      which are passed as the unbuilt config node;
    * other mappings and lists become plain ``dict``/``list`` of built values;
    * anything else (numbers, strings, already-built objects) is returned as is.

    Args:
        cfg: a ``DictConfig``/``ListConfig``, or plain dicts and lists, e.g. ``L(FPN)(...)``.
        overrides: keyword arguments that replace or add top-level entries of ``cfg``.

    Raises:
        ConfigError: for any failure; the message names the config path of the failing node
            (e.g. ``model.roi_heads.box_head``), its target and the original error (kept as ``__cause__``).
    """
    path = config_path(cfg) or ""
    if overrides and not isinstance(cfg, Mapping):
        raise ConfigError(
            f"Cannot instantiate {_where(path)}: overrides need a mapping, got {type(cfg).__name__}"
        )
    return _build(cfg, path, overrides)


def build_part(part: Any, **inferred: Any) -> Any:
    """Build a deferred child inside a constructor, adding what the parent inferred.

    Args:
        part: ``None``; an already-built object; or a config node with ``_target_``.
        inferred: values the parent computed (e.g. ``input_shape=ShapeSpec(...)``). Only those the
            target accepts and the config does not set are passed: explicit config values win.

    Returns:
        ``None`` for ``None``, ``part`` itself when it is already built, else the built object.

    Raises:
        ConfigError: the node fails to build (names its config path when known).
        TypeError: ``part`` is a container of config nodes; build each item instead.
    """
    if part is None:
        return None
    path = (_DEFERRED_PATHS.get() or {}).get(id(part)) or config_path(part) or ""
    if _has_target(part):
        return _call(part, path, {}, inferred)
    if _contains_target(part):
        raise TypeError(
            f"build_part builds one LazyCall node, got a {type(part).__name__} of them at {_where(path)}; "
            "call build_part on each item"
        )
    if isinstance(part, Container):
        return _build(part, path, {})
    return part


def is_config(obj: Any) -> bool:
    """Whether ``obj`` is a config rather than a built object: an omegaconf container or a ``_target_`` dict."""
    return isinstance(obj, Container) or _has_target(obj)


def config_path(node: Any) -> str | None:
    """The dotted path of an omegaconf node inside its root config (``"model.backbone"``), if attached."""
    if not isinstance(node, Container) or node._get_parent() is None:
        return None
    parts = []
    while (parent := node._get_parent()) is not None:
        key = node._key()
        parts.append(f"[{key}]" if isinstance(parent, ListConfig) else f".{key}")
        node = parent
    return "".join(reversed(parts)).lstrip(".")


def _build(value: Any, path: str, overrides: dict[str, Any]) -> Any:
    if _has_target(value):
        return _call(value, path, overrides)
    if isinstance(value, Mapping):
        items = {key: _child(value, key, path) for key in value.keys()}
        items.update(overrides)
        built = {key: _build(item, _join(path, key), {}) for key, item in items.items()}
        kind = OmegaConf.get_type(value) if isinstance(value, DictConfig) else dict
        return built if kind in (dict, None) else _rebuild_structured(kind, built, path)
    if isinstance(value, (ListConfig, list, tuple)):
        built = [_build(_child(value, i, path), _join(path, i), {}) for i in range(len(value))]
        return tuple(built) if isinstance(value, tuple) else built
    return value


def _rebuild_structured(kind: type, fields: dict[str, Any], path: str) -> Any:
    """omegaconf stores a dataclass value (e.g. a ``ShapeSpec``) as a typed ``DictConfig``: make the object again."""
    try:
        return kind(**fields)
    except Exception as e:
        raise ConfigError(f"Cannot instantiate {_where(path)} (a {kind.__name__}): {error_text(e)}") from e


def _call(node: Mapping, path: str, overrides: dict[str, Any], inferred: dict[str, Any] | None = None) -> Any:
    """Build one ``_target_`` node; every failure but a nested ``ConfigError`` is wrapped here."""
    spec = None
    try:
        spec = node["_target_"]
        target = resolve_target(spec)
        names = [k for k in node.keys() if k != "_target_"]
        if inferred:
            overrides = {**_accepted_inferred(node, target, inferred), **overrides}
        check_arguments(target, [*names, *(k for k in overrides if k not in names)], where=target_name(spec))
        deferred = set(getattr(target, "_deferred_args_", ()))
        kwargs = _arguments(node, names, path, overrides, deferred)
        with _deferred_paths(kwargs, deferred, path):
            return target(**kwargs)
    except ConfigError:
        raise  # the innermost failing node already named itself
    except Exception as e:
        raise ConfigError(
            f"Cannot instantiate {_where(path)} (target {target_name(spec)}): {error_text(e)}"
        ) from e


def _arguments(
    node: Mapping, names: list[str], path: str, overrides: dict[str, Any], deferred: set[str]
) -> dict[str, Any]:
    raw = {name: _child(node, name, path) for name in names if name not in overrides}
    raw.update(overrides)
    return {
        name: value if name in deferred else _build(value, _join(path, name), {})
        for name, value in raw.items()
    }


def _accepted_inferred(node: Mapping, target: Any, inferred: dict[str, Any]) -> dict[str, Any]:
    accepted = accepted_arguments(target)
    explicit = {
        k for k in node.keys() if not (isinstance(node, DictConfig) and OmegaConf.is_missing(node, k))
    }
    return {k: v for k, v in inferred.items() if k not in explicit and (accepted is None or k in accepted)}


@contextlib.contextmanager
def _deferred_paths(kwargs: dict[str, Any], deferred: set[str], path: str) -> Iterator[None]:
    containers = (Container, Mapping, list, tuple)
    mine = {id(kwargs[k]): _join(path, k) for k in deferred if isinstance(kwargs.get(k), containers)}
    token = _DEFERRED_PATHS.set({**(_DEFERRED_PATHS.get() or {}), **mine})
    try:
        yield
    finally:
        _DEFERRED_PATHS.reset(token)


def _child(container: Any, key: Any, path: str) -> Any:
    """``container[key]``, naming the key's path when reading fails (missing value, bad interpolation)."""
    try:
        return container[key]
    except Exception as e:
        raise ConfigError(f"Cannot instantiate {_where(_join(path, key))}: {error_text(e)}") from e


def _has_target(obj: Any) -> bool:
    if isinstance(obj, DictConfig):
        return "_target_" in obj.keys()
    return isinstance(obj, Mapping) and "_target_" in obj


def _contains_target(obj: Any) -> bool:
    if isinstance(obj, Container):
        obj = OmegaConf.to_container(obj, resolve=False)
    if _has_target(obj):
        return True
    if isinstance(obj, Mapping):
        return any(_contains_target(v) for v in obj.values())
    if isinstance(obj, (ListConfig, list, tuple)):
        return any(_contains_target(v) for v in obj)
    return False


def _join(path: str, key: Any) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else str(key)


def _where(path: str) -> str:
    return f"config node {path!r}" if path else "the root config node"
