"""``LazyConfig``: load a config file, save it as YAML, and apply command-line overrides."""

from __future__ import annotations

import ast
import contextlib
import dataclasses
import enum
import inspect
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf, SCMode

from rcnnzoo.utils.registry import did_you_mean

from .errors import ConfigError, error_text
from .lazy_call import CONFIG_FLAGS, accepted_arguments, locate, resolve_target
from .py_loader import run_config_file

__all__ = ["LazyConfig"]

_YAML_SUFFIXES = (".yaml", ".yml")
_PRIMITIVES = (str, int, float, bool, type(None))


class LazyConfig:
    """Load, save and override lazy configs (``DictConfig`` trees of ``LazyCall`` nodes)."""

    @staticmethod
    def load(filename: str | os.PathLike, keys: str | Sequence[str] | None = None) -> Any:
        """Load a Python config file, or a ``.yaml`` written by :meth:`save`.

        A Python config file is plain Python run in a fresh namespace. It may import other config
        files by relative import (``from ..common.models import model``); those are loaded afresh
        too, so two loads never share an object. Its public top-level data values (dicts,
        ``DictConfig``s, lists, primitives) make up the config.

        Args:
            filename: path of a ``.py`` or ``.yaml`` file.
            keys: ``None`` for the whole config; a key to get that value; a list of keys to get a
                ``DictConfig`` with only those.

        Raises:
            FileNotFoundError: no such file.
            ConfigError: the file (or a config file it imports) fails to run or parse.
            KeyError: a key in ``keys`` is not in the config.
        """
        path = Path(filename)
        if not path.is_file():
            raise FileNotFoundError(f"Config file not found: {path}")
        if path.suffix in _YAML_SUFFIXES:
            cfg = _load_yaml(path)
        elif path.suffix == ".py":
            cfg = _to_dictconfig(run_config_file(path), path)
        else:
            raise ConfigError(f"Cannot load {path}: config files end in .py, .yaml or .yml")
        return _select(cfg, keys, path)

    @staticmethod
    def save(cfg: DictConfig | dict, filename: str | os.PathLike) -> None:
        """Write ``cfg`` as YAML that :meth:`load` reads back and instantiates to the same objects.

        Classes and functions are written as ``"module.qualname"`` import paths; a dataclass
        instance (e.g. a ``ShapeSpec``) as a ``_target_`` node that rebuilds it. The file is
        replaced atomically, so a reader never sees half a config.

        Raises:
            ConfigError: a value cannot be written (e.g. a tensor, or a class defined inside a
                function); the message names its key.
        """
        node = cfg if isinstance(cfg, DictConfig) else DictConfig(cfg, flags=CONFIG_FLAGS)
        # INSTANTIATE gives dataclass values (stored as typed nodes) back as objects, to save as nodes.
        container = OmegaConf.to_container(node, resolve=False, structured_config_mode=SCMode.INSTANTIATE)
        data = _to_yaml_data(container, "")
        _write_atomic(Path(filename), OmegaConf.to_yaml(OmegaConf.create(data)))

    @staticmethod
    def apply_overrides(cfg: DictConfig, overrides: Sequence[str]) -> DictConfig:
        """Apply command-line overrides like ``["train.max_iter=100", "model.backbone.depth=101"]``.

        The value is parsed with ``ast.literal_eval`` and falls back to the raw string
        (``a=foo`` sets ``"foo"``, ``a=[1,2]`` a list, ``a=None`` ``None``). Only existing keys can be
        set, and, in a ``LazyCall`` node, any argument of its target (``model.backbone.depth=101``
        when the config leaves ``depth`` at its default). Prefix the key with ``+`` (``+a.b=1``) to
        add another key on purpose.

        Returns:
            ``cfg``, modified in place.

        Raises:
            KeyError: the key does not exist; the message gives the full key, close matches and
                the valid keys at that level.
            ValueError: an item is not ``key=value``.
        """
        for item in overrides:
            key, value, add = _parse_override(item)
            _set_dotted(cfg, key, value, add)
        return cfg


def _load_yaml(path: Path) -> DictConfig:
    try:
        return DictConfig(OmegaConf.load(path), flags=CONFIG_FLAGS)
    except Exception as e:
        raise ConfigError(f"Error in config file {path}: {error_text(e)}") from e


def _to_dictconfig(values: dict[str, Any], path: Path) -> DictConfig:
    try:
        return DictConfig(values, flags=CONFIG_FLAGS)
    except Exception as e:
        raise ConfigError(f"Config file {path} defines a value omegaconf cannot hold: {error_text(e)}") from e


def _select(cfg: DictConfig, keys: str | Sequence[str] | None, path: Path) -> Any:
    if keys is None:
        return cfg
    for key in [keys] if isinstance(keys, str) else keys:
        if key not in cfg.keys():
            valid = [str(k) for k in cfg.keys()]
            raise KeyError(
                f"Config file {path} has no key {key!r}.{did_you_mean(key, valid)} Keys: {', '.join(valid)}"
            )
    if isinstance(keys, str):
        return cfg[keys]
    return OmegaConf.masked_copy(cfg, list(keys))


# ---------------------------------------------------------------------------------------- save


def _to_yaml_data(value: Any, key: str) -> Any:
    """``value`` as YAML-safe data; ``key`` is its dotted path, for the error message."""
    if isinstance(value, _PRIMITIVES):
        return value
    if isinstance(value, dict):
        return {k: _to_yaml_data(v, _join(key, k)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_yaml_data(v, f"{key}[{i}]") for i, v in enumerate(value)]
    if inspect.isclass(value) or inspect.isroutine(value):
        name = _import_path(value, key)
        # A class or function given as an argument (not as a target) must come back as itself,
        # not as a string: save it as a node that imports it.
        return name if key.split(".")[-1] == "_target_" else _locate_node(name)
    if isinstance(value, enum.Enum):
        return _locate_node(f"{_import_path(type(value), key)}.{value.name}")
    if dataclasses.is_dataclass(value):
        return _dataclass_node(value, key)
    raise ConfigError(
        f"Cannot save config key {key!r}: a {type(value).__name__} ({value!r:.80}) cannot be written to YAML;"
        " describe it with LazyCall(...) instead"
    )


def _locate_node(import_path: str) -> dict[str, str]:
    # The public name, not lazy_call.locate: saved files must survive moving code between modules.
    return {"_target_": "rcnnzoo.config.locate", "path": import_path}


def _import_path(obj: Any, key: str) -> str:
    name = f"{obj.__module__}.{obj.__qualname__}"
    try:
        found = locate(name)
    except ImportError:
        found = None
    if found is not obj:
        raise ConfigError(
            f"Cannot save config key {key!r}: {name!r} cannot be imported back (a class or function "
            "defined inside a function?); move it to module level"
        )
    return name


def _dataclass_node(value: Any, key: str) -> dict[str, Any]:
    fields = dataclasses.fields(value)
    if not all(f.init for f in fields):
        raise ConfigError(
            f"Cannot save config key {key!r}: dataclass {type(value).__name__} has non-init fields"
        )
    node = {"_target_": _import_path(type(value), key)}
    node.update({f.name: _to_yaml_data(getattr(value, f.name), _join(key, f.name)) for f in fields})
    return node


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; a saved config is meant to be shared
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


# ----------------------------------------------------------------------------------- overrides


def _parse_override(item: str) -> tuple[str, Any, bool]:
    key, sep, raw = item.partition("=")
    key = key.strip()
    add = key.startswith("+")
    key = key.removeprefix("+")
    if not sep or not key or "" in key.split("."):
        raise ValueError(f"Override {item!r} must look like 'a.b.c=value' (or '+a.b.c=value' to add a key)")
    return key, _parse_value(raw), add


def _parse_value(raw: str) -> Any:
    """A Python literal, else a flat ``[a, b]`` list of bare words (as Hydra reads it), else ``raw``.

    So ``out_features=[c3,c4]`` and ``proposal_files=[/data/p.npz]`` give lists of strings, as
    users of Hydra or detectron2's command line expect, not the string ``"[c3,c4]"``.
    """
    try:
        return ast.literal_eval(raw)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        pass
    inner = raw.strip()
    if inner.startswith("[") and inner.endswith("]") and not any(c in inner[1:-1] for c in "[]{}()'\""):
        items = [item.strip() for item in inner[1:-1].split(",")]
        if all(items):
            return [_parse_value(item) for item in items]
        if items == [""]:
            return []
    return raw


def _set_dotted(cfg: DictConfig, dotted: str, value: Any, add: bool) -> None:
    parts = dotted.split(".")
    node: Any = cfg
    for i, part in enumerate(parts[:-1]):
        node = _descend(node, part, ".".join(parts[: i + 1]), dotted, add)
    last = parts[-1]
    if isinstance(node, ListConfig):
        node[_list_index(node, last, dotted)] = value
        return
    if last not in _settable_keys(node) and not add:
        _raise_missing(node, last, dotted)
    if isinstance(value, list) and last in node.keys() and OmegaConf.get_type(node, last) is tuple:
        value = tuple(value)  # `key=[1,2]` on a tuple-valued key keeps it a tuple
    node[last] = value


def _descend(node: Any, part: str, prefix: str, dotted: str, add: bool) -> Any:
    if isinstance(node, ListConfig):
        child = node[_list_index(node, part, dotted)]
    elif part in node.keys():
        child = node[part]
    elif add:
        node[part] = {}
        child = node[part]
    else:
        _raise_missing(node, part, dotted)
    if not isinstance(child, (DictConfig, ListConfig)):
        raise KeyError(
            f"Cannot override {dotted!r}: {prefix!r} is a {type(child).__name__}, not a config node"
        )
    return child


def _list_index(node: ListConfig, part: str, dotted: str) -> int:
    if not (part.lstrip("-").isdigit() and -len(node) <= int(part) < len(node)):
        raise KeyError(
            f"Cannot override {dotted!r}: {part!r} is not an index of a list of length {len(node)}"
        )
    return int(part)


def _settable_keys(node: DictConfig) -> list[str]:
    """The node's keys, plus, for a ``_target_`` node, the target's arguments left at their defaults."""
    keys = [str(k) for k in node.keys()]
    if "_target_" not in keys:
        return keys
    try:
        arguments = accepted_arguments(resolve_target(node._target_)) or []
    except Exception:  # an unresolvable target fails later, at instantiate, with its own message
        arguments = []
    return keys + [a for a in arguments if a not in keys]


def _raise_missing(node: DictConfig, part: str, dotted: str) -> None:
    valid = _settable_keys(node)
    raise KeyError(
        f"Cannot override {dotted!r}: no key {part!r} here.{did_you_mean(part, valid)}"
        f" Valid keys: {', '.join(valid) or '(none)'}. To add a new key, write '+{dotted}=...'"
    )


def _join(path: str, key: Any) -> str:
    return f"{path}.{key}" if path else str(key)
