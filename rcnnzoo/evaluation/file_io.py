"""Atomic file writes for evaluation outputs.

A results or ground-truth json that another process (or a later run reading a cache) may
open must never be seen half-written: write a temporary file in the same directory, then
``os.replace`` it over the target, which is atomic on POSIX and Windows.
"""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any

__all__ = ["atomic_write_json"]


def atomic_write_json(obj: Any, path: str | os.PathLike) -> None:
    """Serialize ``obj`` as json to ``path`` atomically, creating parent directories."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=".json")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(obj, f)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
