"""``LazyCall``: record a call as a config node, and turn a node's target back into a callable.

A node is an omegaconf ``DictConfig`` ``{"_target_": target, **kwargs}``. The target is one of

* a class or function (``L(FPN)(...)``): arguments are checked against its signature right away;
* a dotted import path (``"torch.nn.Conv2d"``): imported at instantiate time;
* a registered name (``"ResNet"`` or ``"BACKBONE:ResNet"``): looked up in the registries at
  instantiate time, so that a config need not import the module that defines the part.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from typing import Any

from omegaconf import DictConfig

from rcnnzoo.utils.registry import did_you_mean, locate_registered

__all__ = [
    "LazyCall",
    "L",
    "locate",
    "resolve_target",
    "target_name",
    "check_arguments",
    "accepted_arguments",
]

# Objects (classes, functions, tensors, ShapeSpecs...) may sit in a config as they are.
CONFIG_FLAGS = {"allow_objects": True}


class LazyCall:
    """Record a call to ``target`` instead of making it: ``LazyCall(FPN)(out_channels=256)``.

    Calling the ``LazyCall`` returns a ``DictConfig`` ``{"_target_": FPN, "out_channels": 256}`` that
    :func:`rcnnzoo.config.instantiate` turns into ``FPN(out_channels=256)``.

    Args:
        target: a class or function, a dotted import path, or a registered name.

    Raises:
        TypeError: if ``target`` is neither callable nor a string, or (when the call is made) a
            keyword is not an argument of a callable target; the message suggests close names.
    """

    def __init__(self, target: Callable | str) -> None:
        if not (callable(target) or isinstance(target, str)):
            raise TypeError(
                f"LazyCall expects a class, a function, an import path or a registered name; "
                f"got {type(target).__name__}: {target!r}"
            )
        self._target = target

    def __call__(self, **kwargs: Any) -> DictConfig:
        if callable(self._target):
            check_arguments(self._target, kwargs, where=f"LazyCall({target_name(self._target)})")
        return DictConfig({"_target_": self._target, **kwargs}, flags=CONFIG_FLAGS)

    def __repr__(self) -> str:
        return f"LazyCall({target_name(self._target)})"


L = LazyCall


def target_name(target: Any) -> str:
    """A short human-readable name for a target: ``"FPN"``, ``"torch.nn.Conv2d"``, ``"BACKBONE:ResNet"``."""
    if isinstance(target, str):
        return target
    return getattr(target, "__qualname__", None) or getattr(target, "__name__", None) or repr(target)


def accepted_arguments(target: Callable) -> list[str] | None:
    """The keyword arguments ``target`` accepts, or ``None`` when it accepts any (``**kwargs``).

    Also ``None`` when the signature cannot be read (some builtins): nothing can be checked then.
    """
    try:
        params = inspect.signature(target).parameters.values()
    except (TypeError, ValueError):
        return None
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return None
    keyword_kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return [p.name for p in params if p.kind in keyword_kinds]


def check_arguments(target: Callable, names: Any, where: str) -> None:
    """Raise ``TypeError`` for the first name in ``names`` that ``target`` does not accept.

    The message reads ``"{where}: unknown argument 'x'. Did you mean 'y'? Valid arguments: ..."``.
    """
    valid = accepted_arguments(target)
    if valid is None:
        return
    for name in names:
        if name not in valid:
            raise TypeError(
                f"{where}: unknown argument {name!r}.{did_you_mean(str(name), valid)}"
                f" Valid arguments: {', '.join(valid) or '(none)'}"
            )


def is_import_path(name: str) -> bool:
    """Whether a string target is an import path (``"a.b.C"``) rather than a registered name."""
    return "." in name and ":" not in name


def resolve_target(target: Any) -> Callable:
    """Turn a node's ``_target_`` into the callable it names.

    Raises:
        ImportError: an import path that does not exist.
        KeyError: a registered name that no registry holds (the message lists the valid ones).
        TypeError: a target that is neither callable nor a string.
    """
    if isinstance(target, str):
        obj = locate(target) if is_import_path(target) else locate_registered(target)
    else:
        obj = target
    if not callable(obj):
        raise TypeError(f"_target_ {target_name(target)!r} is not callable: {obj!r}")
    return obj


def locate(path: str) -> Any:
    """Import the object at a dotted path, e.g. ``"torch.nn.Conv2d"`` or ``"pkg.mod.Outer.Inner"``.

    Raises:
        ImportError: no prefix of ``path`` is a module, or the module lacks the attribute.
    """
    parts = path.split(".")
    for i in range(len(parts), 0, -1):
        module_name = ".".join(parts[:i])
        try:
            obj = importlib.import_module(module_name)
        except ModuleNotFoundError as e:
            # Only "this prefix is not a module" means: try a shorter one. A module that
            # exists but fails to import one of its own dependencies is a real error.
            if e.name is None or not (module_name == e.name or module_name.startswith(e.name + ".")):
                raise
            continue
        return _get_attributes(obj, parts[i:], path)
    raise ImportError(f"Cannot locate {path!r}: there is no module named {parts[0]!r}")


def _get_attributes(obj: Any, attrs: list[str], path: str) -> Any:
    for attr in attrs:
        if not hasattr(obj, attr):
            public = [n for n in dir(obj) if not n.startswith("_")]
            raise ImportError(
                f"Cannot locate {path!r}: {getattr(obj, '__name__', obj)!r} has no attribute {attr!r}."
                f"{did_you_mean(attr, public)}"
            )
        obj = getattr(obj, attr)
    return obj
