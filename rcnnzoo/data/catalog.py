"""Dataset and metadata catalogs: a dataset is a *name* that maps to a function returning dicts.

Registering a dataset only records a function; nothing is read until :meth:`DatasetCatalog.get`,
so importing :mod:`rcnnzoo.data` never touches the disk and a config can name a dataset that
exists on one machine only.

A dataset dict (one per image) has at least ``file_name``, ``height``, ``width``, ``image_id`` and,
for training, ``annotations``: a list of dicts with ``bbox``, ``bbox_mode`` (:class:`BoxMode`),
``category_id`` (contiguous, 0..K-1) and optionally ``segmentation`` and ``iscrowd``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from rcnnzoo.utils.registry import did_you_mean

__all__ = ["DatasetCatalog", "MetadataCatalog", "Metadata"]

logger = logging.getLogger(__name__)


def _unknown_name_error(kind: str, name: str, registered: list[str]) -> KeyError:
    return KeyError(
        f"{kind} {name!r} is not registered.{did_you_mean(name, registered)}"
        f" Registered: {', '.join(registered) or '(none)'}"
    )


class _DatasetCatalog:
    """name -> function returning ``list[dict]`` (the dataset dicts). Use the :data:`DatasetCatalog` instance."""

    def __init__(self) -> None:
        self._funcs: dict[str, Callable[[], list[dict]]] = {}

    def register(self, name: str, func: Callable[[], list[dict]]) -> None:
        """Record ``func`` (called with no arguments) as the loader of dataset ``name``.

        Raises:
            ValueError: if ``name`` is already registered (call :meth:`remove` first to replace it).
        """
        if not callable(func):
            raise TypeError(f"DatasetCatalog.register({name!r}, ...) needs a callable, got {type(func)}")
        if name in self._funcs:
            raise ValueError(
                f"Dataset {name!r} is already registered; call DatasetCatalog.remove({name!r}) first "
                "to replace it"
            )
        self._funcs[name] = func

    def get(self, name: str) -> list[dict]:
        """Call the loader of ``name`` and return its dataset dicts (a fresh list each call).

        Raises:
            KeyError: if ``name`` is not registered; the message lists the registered names.
        """
        func = self._funcs.get(name)
        if func is None:
            raise _unknown_name_error("Dataset", name, self.list())
        dicts = func()
        if not isinstance(dicts, list):
            raise TypeError(
                f"The loader of dataset {name!r} returned {type(dicts)}; it must return a list[dict]"
            )
        return dicts

    def list(self) -> list[str]:
        """The registered dataset names, sorted."""
        return sorted(self._funcs)

    def remove(self, name: str) -> None:
        """Forget dataset ``name`` (KeyError if it is not registered)."""
        if name not in self._funcs:
            raise _unknown_name_error("Dataset", name, self.list())
        del self._funcs[name]

    def __contains__(self, name: str) -> bool:
        return name in self._funcs

    def __repr__(self) -> str:
        return f"DatasetCatalog(registered datasets: {', '.join(self.list())})"


class Metadata:
    """Facts about a dataset, as attributes: ``thing_classes``, ``evaluator_type``, ``json_file``...

    Set with :meth:`set` (or plain attribute assignment). Reading an attribute that was never set
    raises ``AttributeError`` listing the ones that were. Changing a set value is refused, because
    two parts of a program disagreeing about e.g. the class names is a bug worth hearing about;
    ``MetadataCatalog.remove(name)`` starts over.
    """

    def __init__(self, name: str = "") -> None:
        object.__setattr__(self, "name", name)

    def __getattr__(self, key: str) -> Any:
        # Only called for attributes that are not set. Dunder lookups (copy, pickle) must fail
        # quietly with AttributeError so those protocols fall back to their defaults.
        if key.startswith("__"):
            raise AttributeError(key)
        name = self.__dict__.get("name", "")
        known = sorted(k for k in self.__dict__ if k != "name")
        raise AttributeError(
            f"Metadata of dataset {name!r} has no attribute {key!r}.{did_you_mean(key, known)}"
            f" Set attributes: {', '.join(known) or '(none)'}"
        )

    def __setattr__(self, key: str, value: Any) -> None:
        if key in self.__dict__:
            old = self.__dict__[key]
            if not _same_value(old, value):
                raise ValueError(
                    f"Metadata attribute {key!r} of dataset {self.name!r} is already {old!r}; refusing to "
                    f"change it to {value!r}. Call MetadataCatalog.remove({self.name!r}) to start over."
                )
            return
        object.__setattr__(self, key, value)

    def set(self, **kwargs: Any) -> Metadata:
        """Set several attributes; returns ``self`` for chaining."""
        for k, v in kwargs.items():
            setattr(self, k, v)
        return self

    def get(self, key: str, default: Any = None) -> Any:
        """The attribute ``key``, or ``default`` if it is not set."""
        return self.__dict__.get(key, default)

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    def __repr__(self) -> str:
        items = ", ".join(f"{k}={v!r}" for k, v in self.__dict__.items())
        return f"Metadata({items})"


def _same_value(a: Any, b: Any) -> bool:
    try:
        return bool(a == b)
    except Exception:  # e.g. arrays whose == is elementwise
        return a is b


class _MetadataCatalog:
    """name -> :class:`Metadata`, created empty on first :meth:`get`. Use the :data:`MetadataCatalog` instance."""

    def __init__(self) -> None:
        self._metas: dict[str, Metadata] = {}

    def get(self, name: str) -> Metadata:
        """The metadata of ``name``; an empty :class:`Metadata` is created the first time."""
        meta = self._metas.get(name)
        if meta is None:
            meta = self._metas[name] = Metadata(name)
        return meta

    def list(self) -> list[str]:
        """Names that have metadata, sorted."""
        return sorted(self._metas)

    def remove(self, name: str) -> None:
        """Drop the metadata of ``name`` (KeyError if there is none)."""
        if name not in self._metas:
            raise _unknown_name_error("Metadata for dataset", name, self.list())
        del self._metas[name]

    def __contains__(self, name: str) -> bool:
        return name in self._metas


DatasetCatalog = _DatasetCatalog()
MetadataCatalog = _MetadataCatalog()
