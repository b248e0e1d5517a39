"""Read plain pickles (detectron2 / Detectron / Caffe2 ``.pkl`` weights) without running their code.

``pickle.load`` calls any function a file names (``os.system``, ``builtins.eval`` ...): a ``.pkl``
from the internet is a program. :func:`load_pickle` only lets a pickle name the globals that plain
data needs, so a file can hold nested dicts, lists, tuples, sets, strings, bytes, numbers, ``None``,
``collections.OrderedDict`` and numpy arrays, dtypes and scalars, and nothing else. Any other
global raises :class:`UnsafePickleError` *when it is looked up*, before the call that would have
used it, so nothing from a refused file runs.

The allowed globals are those that numpy 1.x and 2.x (``numpy.core`` / ``numpy._core``) and
Python 2 and 3 write for such data, with any pickle protocol:

* ``numpy.ndarray``, ``numpy.dtype``, ``numpy[._]core.multiarray._reconstruct`` (arrays, protocols
  0-4), ``numpy[._]core.numeric._frombuffer`` (arrays, protocol 5), ``numpy[._]core.multiarray.scalar``
  (numpy scalars such as ``np.float32(1)``);
* ``builtins`` (``__builtin__`` in protocols 0-2) ``set``, ``frozenset``, ``bytes`` (``b""`` in
  protocols 0-2), ``bytearray``, ``complex``;
  ``collections.OrderedDict``;
* ``_codecs.encode``, which protocols 0-2 use for ``bytes`` written by Python 3, only to encode a
  string as latin-1 (any other codec is refused when called).

Python 2 strings are decoded as latin-1, as detectron2 reads its model zoo files, so byte strings
inside Python 2 numpy pickles (array data) keep their bytes.
"""

from __future__ import annotations

import collections
import importlib
import os
import pickle
from collections.abc import Callable
from typing import IO, Any

from .checkpointer import CheckpointError

__all__ = ["UnsafePickleError", "load_pickle", "ALLOWED_GLOBALS"]


class UnsafePickleError(CheckpointError, pickle.UnpicklingError):
    """A pickle that names a global outside :data:`ALLOWED_GLOBALS` (it would run code to load).

    Attributes:
        global_name: the refused ``module.name``.
        file: the file (or stream) being read.
    """

    def __init__(self, global_name: str, file: str, detail: str = "") -> None:
        self.global_name = global_name
        self.file = file
        super().__init__(
            f"Refused to load {file}: it references the global {global_name}"
            f"{' (' + detail + ')' if detail else ''}, which is not plain data (containers, numbers, "
            "strings, numpy arrays); unpickling it could run arbitrary code. Only load files you trust "
            "by other means, or ask their author for a tensors-only format."
        )


class _RefusedCall(Exception):
    """An allowed global called with arguments outside its safe use; becomes an UnsafePickleError."""

    def __init__(self, global_name: str, detail: str) -> None:
        super().__init__(global_name, detail)
        self.global_name, self.detail = global_name, detail


def _encode_latin1(obj: Any, encoding: str = "utf-8", errors: str = "strict") -> bytes:
    """``_codecs.encode`` limited to what pickles of ``bytes`` use: ``encode(str, "latin1")``."""
    # compared as strings: codecs.lookup() would import the named codec's module
    if not isinstance(obj, str) or encoding not in ("latin1", "latin-1") or errors != "strict":
        raise _RefusedCall("_codecs.encode", f"called with ({type(obj).__name__}, {encoding!r}, {errors!r})")
    return obj.encode("latin-1")


def _numpy(attr: str, *modules: str) -> Callable[[], Any]:
    """The installed numpy's ``attr``, looked up in the first of ``modules`` that has it (numpy 2
    renamed ``numpy.core`` to ``numpy._core``; importing the old name there warns)."""

    def resolve() -> Any:
        for name in modules:
            try:
                return getattr(importlib.import_module(name), attr)
            except (ImportError, AttributeError):
                continue
        raise pickle.UnpicklingError(f"this numpy has no {attr} in {modules}")

    return resolve


_MULTIARRAY = ("numpy._core.multiarray", "numpy.core.multiarray")
_NUMERIC = ("numpy._core.numeric", "numpy.core.numeric")


def _builtin(name: str) -> Callable[[], Any]:
    return lambda: getattr(__import__("builtins"), name)


_RESOLVERS: dict[tuple[str, str], Callable[[], Any]] = {
    ("numpy", "ndarray"): _numpy("ndarray", "numpy"),
    ("numpy", "dtype"): _numpy("dtype", "numpy"),
    **{(m, "_reconstruct"): _numpy("_reconstruct", *_MULTIARRAY) for m in _MULTIARRAY},
    **{(m, "scalar"): _numpy("scalar", *_MULTIARRAY) for m in _MULTIARRAY},
    **{(m, "_frombuffer"): _numpy("_frombuffer", *_NUMERIC) for m in _NUMERIC},
    **{
        (module, name): _builtin(name)
        for module in ("builtins", "__builtin__")
        for name in ("set", "frozenset", "bytes", "bytearray", "complex")
    },
    ("collections", "OrderedDict"): lambda: collections.OrderedDict,
    ("_codecs", "encode"): lambda: _encode_latin1,
}

ALLOWED_GLOBALS: tuple[str, ...] = tuple(sorted(f"{m}.{n}" for m, n in _RESOLVERS))
"""Every ``module.name`` a pickle may reference (see the module docstring)."""


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file: IO[bytes], name: str) -> None:
        super().__init__(file, encoding="latin1")
        self._name = name

    def find_class(self, module: str, name: str) -> Any:
        # Overriding find_class also skips pickle's Python 2 name mapping (``__builtin__`` ->
        # ``builtins``): the table above lists both spellings itself.
        resolve = _RESOLVERS.get((module, name))
        if resolve is None:
            raise UnsafePickleError(f"{module}.{name}", self._name)
        return resolve()

    def persistent_load(self, pid: Any) -> Any:
        # torch.save's files use persistent ids for tensor storages; plain data never does.
        raise UnsafePickleError("<persistent id>", self._name, "a torch.save file? read it with torch.load")


def load_pickle(path_or_file: str | os.PathLike[str] | IO[bytes]) -> Any:
    """Unpickle plain data and numpy arrays from a path or a binary file object.

    Args:
        path_or_file: a local path or an open binary file (read from its current position).
    Returns:
        the unpickled object, e.g. ``{"model": {name: np.ndarray}, "__author__": ...}``.
    Raises:
        UnsafePickleError: the pickle names a global outside :data:`ALLOWED_GLOBALS`; nothing in
            it was called.
        CheckpointError: the file is not a pickle, or is truncated or corrupt.
        FileNotFoundError: no such path.
    """
    if isinstance(path_or_file, (str, os.PathLike)):
        with open(path_or_file, "rb") as f:
            return _load(f, os.fspath(path_or_file))
    return _load(path_or_file, str(getattr(path_or_file, "name", "<stream>")))


def _load(f: IO[bytes], name: str) -> Any:
    try:
        return _RestrictedUnpickler(f, name).load()
    except UnsafePickleError:
        raise
    except _RefusedCall as e:
        raise UnsafePickleError(e.global_name, name, e.detail) from None
    except Exception as e:  # pickle's errors for bad data come in many types (EOFError, KeyError ...)
        raise CheckpointError(
            f"{name} is not a readable pickle (corrupt, truncated or another format): {e}"
        ) from e
