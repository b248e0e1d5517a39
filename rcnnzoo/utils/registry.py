"""Registries: name -> component, one per kind of part.

A thin layer over fvcore's :class:`fvcore.common.registry.Registry` that adds what
users need when a name is wrong or taken:

* an unknown name raises ``KeyError`` listing the valid names and the closest matches;
* registering a name twice raises and says where the first one was defined, unless
  ``force=True`` is passed (a deliberate override);
* every registry is recorded in :data:`ALL_REGISTRIES` so that a config can name a
  registered part without saying which registry holds it (see :func:`locate_registered`).
"""

from __future__ import annotations

import difflib
import importlib
import inspect
from collections.abc import Callable
from typing import Any

from fvcore.common.registry import Registry as _FvcoreRegistry

__all__ = ["Registry", "ALL_REGISTRIES", "locate_registered", "did_you_mean"]

ALL_REGISTRIES: dict[str, Registry] = {}

# Packages whose import fills the built-in registries. Looked up lazily so that a config
# can name a built-in part without importing the module that defines it.
_BUILTIN_PACKAGES = ("rcnnzoo.modeling", "rcnnzoo.evaluation")


def did_you_mean(name: str, choices: list[str] | tuple[str, ...], n: int = 3) -> str:
    """Return ``" Did you mean 'x'?"`` for the closest matches of ``name``, or ``""``."""
    close = difflib.get_close_matches(name, list(choices), n=n, cutoff=0.5)
    if not close:
        return ""
    return " Did you mean " + " or ".join(repr(c) for c in close) + "?"


def _where(obj: Any) -> str:
    try:
        return f"{inspect.getsourcefile(obj)}:{inspect.getsourcelines(obj)[1]}"
    except (TypeError, OSError):
        return getattr(obj, "__module__", "<unknown>")


class Registry(_FvcoreRegistry):
    """A named mapping of strings to classes or functions, filled by a decorator.

    Example::

        BACKBONE_REGISTRY = Registry("BACKBONE")

        @BACKBONE_REGISTRY.register()
        class TinyNet(Backbone): ...

        BACKBONE_REGISTRY.get("TinyNet")
    """

    def __init__(self, name: str) -> None:
        super().__init__(name)
        if name in ALL_REGISTRIES:
            raise ValueError(f"A registry named {name!r} already exists")
        ALL_REGISTRIES[name] = self

    def _do_register(self, name: str, obj: Any, force: bool = False) -> None:
        old = self._obj_map.get(name)
        if old is not None and old is not obj and not force:
            raise KeyError(
                f"{name!r} is already registered in the {self._name} registry "
                f"(defined at {_where(old)}); pass force=True to replace it"
            )
        self._obj_map[name] = obj

    def register(self, obj: Any = None, *, name: str | None = None, force: bool = False) -> Any:
        """Register ``obj`` under ``name`` (default: ``obj.__name__``).

        Usable as ``@REG.register()``, ``@REG.register(name="X", force=True)`` or ``REG.register(obj)``.
        """
        if obj is None:

            def deco(func_or_class: Callable) -> Callable:
                self._do_register(name or func_or_class.__name__, func_or_class, force)
                return func_or_class

            return deco
        self._do_register(name or obj.__name__, obj, force)
        return obj

    def get(self, name: str) -> Any:
        ret = self._obj_map.get(name)
        if ret is None:
            valid = sorted(self._obj_map)
            raise KeyError(
                f"No object named {name!r} in the {self._name} registry.{did_you_mean(name, valid)}"
                f" Valid names: {', '.join(valid) or '(none)'}"
            )
        return ret

    def names(self) -> list[str]:
        """The registered names, sorted."""
        return sorted(self._obj_map)


def _import_builtins() -> None:
    for pkg in _BUILTIN_PACKAGES:
        importlib.import_module(pkg)


def locate_registered(name: str) -> Any:
    """Find ``name`` in any registry, e.g. ``"ResNet"`` or ``"BACKBONE:ResNet"``.

    Raises:
        KeyError: if no registry (or more than one) holds the name; the message lists
            the close matches and every registered name.
    """
    _import_builtins()
    if ":" in name:
        reg_name, _, obj_name = name.partition(":")
        if reg_name not in ALL_REGISTRIES:
            raise KeyError(
                f"No registry named {reg_name!r}.{did_you_mean(reg_name, list(ALL_REGISTRIES))}"
                f" Registries: {', '.join(sorted(ALL_REGISTRIES))}"
            )
        return ALL_REGISTRIES[reg_name].get(obj_name)
    hits = [(reg, reg.get(name)) for reg in ALL_REGISTRIES.values() if name in reg]
    if len(hits) == 1:
        return hits[0][1]
    if len(hits) > 1:
        where = ", ".join(f"{r._name}:{name}" for r, _ in hits)
        raise KeyError(f"{name!r} is registered in several registries; write one of: {where}")
    every = sorted({n for reg in ALL_REGISTRIES.values() for n in reg.names()})
    raise KeyError(
        f"No registered part named {name!r}.{did_you_mean(name, every)}"
        f" Registered names: {', '.join(every) or '(none)'}"
    )
