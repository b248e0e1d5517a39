"""Where datasets live: ``$RCNNZOO_DATASETS`` (default ``./datasets``), read when data is used.

The root is read from the environment each time a path is resolved, never at import, so a
program (or a test) may set ``RCNNZOO_DATASETS`` after importing :mod:`rcnnzoo.data`.
"""

from __future__ import annotations

import os

__all__ = ["DATASETS_ENV", "get_datasets_root", "DatasetPath"]

DATASETS_ENV = "RCNNZOO_DATASETS"
_DEFAULT_ROOT = "./datasets"


def get_datasets_root() -> str:
    """The datasets root: ``$RCNNZOO_DATASETS`` if set and non-empty, else ``./datasets``."""
    return os.path.expanduser(os.environ.get(DATASETS_ENV) or _DEFAULT_ROOT)


def describe_datasets_root() -> str:
    """e.g. ``"'/data' (from $RCNNZOO_DATASETS)"``, for error messages."""
    root = get_datasets_root()
    source = f"from ${DATASETS_ENV}" if os.environ.get(DATASETS_ENV) else f"default; set ${DATASETS_ENV} to change it"
    return f"{os.path.abspath(root)!r} ({source})"


class DatasetPath(os.PathLike):
    """A path relative to the datasets root, resolved each time it is used.

    Built-in datasets store these in their metadata (``json_file``, ``image_root``, ``dirname``) so
    that the metadata follows ``$RCNNZOO_DATASETS`` at the time of use. It works wherever a path
    does: ``open(p)``, ``os.path.join(p, "x")``, ``os.fspath(p)``, ``str(p)``.
    """

    def __init__(self, relative: str) -> None:
        self.relative = relative

    def __fspath__(self) -> str:
        return os.path.join(get_datasets_root(), self.relative)

    def __str__(self) -> str:
        return self.__fspath__()

    def __repr__(self) -> str:
        return f"DatasetPath({self.relative!r} -> {self.__fspath__()!r})"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, DatasetPath):
            return self.relative == other.relative
        return NotImplemented

    def __hash__(self) -> int:
        return hash(("DatasetPath", self.relative))
