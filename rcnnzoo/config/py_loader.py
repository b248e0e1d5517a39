"""Run a Python config file, letting it import other config files by relative import.

Every load gets its own synthetic top-level package (``_rcnnzoo_config_<n>``) whose submodules
mirror the file system: the directory ``/a/b`` is the package ``_rcnnzoo_config_<n>.a.b``. A
relative import inside a config file (``from ..common.models import model``) then resolves, by
Python's own rules, to the file next to it on disk; a meta-path finder installed for the duration
of the load maps those names back to files. The synthetic modules are dropped afterwards, so two
loads never share an object, and absolute imports (``import torch``) work as usual.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import itertools
import os
import sys
import threading
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

from omegaconf import Container, DictConfig

from .errors import ConfigError, error_text

__all__ = ["run_config_file"]

_load_ids = itertools.count()
_meta_path_lock = threading.Lock()
_DATA_TYPES = (Container, Mapping, list, tuple, str, int, float, bool, type(None))


def run_config_file(filename: str | os.PathLike) -> dict[str, Any]:
    """Execute a Python config file and return its public top-level data values.

    Public data means names not starting with ``_`` bound to dicts, ``DictConfig``s, lists, tuples
    or primitives; modules, classes, functions and other objects are left out.

    Raises:
        ConfigError: the file (or a config file it imports) fails; the message names that file.
    """
    path = Path(os.path.abspath(filename))
    finder = _ConfigFinder(root=f"_rcnnzoo_config_{next(_load_ids)}", anchor=Path(path.anchor))
    with _meta_path_lock:
        sys.meta_path.insert(0, finder)
    try:
        module = importlib.import_module(finder.module_name(path))
    finally:
        with _meta_path_lock:
            sys.meta_path.remove(finder)
        finder.forget_modules()
    return {k: v for k, v in vars(module).items() if not k.startswith("_") and isinstance(v, _DATA_TYPES)}


def _encode(part: str) -> str:
    # A directory name may contain dots, which would split a module name.
    return part.replace("%", "%25").replace(".", "%2E")


def _decode(part: str) -> str:
    return part.replace("%2E", ".").replace("%25", "%")


class _ConfigFinder(importlib.abc.MetaPathFinder):
    """Finds the modules of one load's synthetic package: directories and ``.py`` config files."""

    def __init__(self, root: str, anchor: Path) -> None:
        self.root = root
        self.anchor = anchor

    def module_name(self, file: Path) -> str:
        """The synthetic module name of a config file, e.g. ``_rcnnzoo_config_3.tmp.proj.cfg``."""
        parts = [*file.parent.relative_to(self.anchor).parts, file.stem]
        return ".".join([self.root, *(_encode(p) for p in parts)])

    def owns(self, fullname: str) -> bool:
        """Whether ``fullname`` is a module of this load's synthetic package."""
        return fullname == self.root or fullname.startswith(self.root + ".")

    def location(self, fullname: str) -> Path:
        """The file system path a synthetic module name stands for (without a ``.py`` suffix)."""
        return self.anchor.joinpath(*(_decode(p) for p in fullname.split(".")[1:]))

    def find_spec(self, fullname: str, path: Any = None, target: ModuleType | None = None) -> Any:
        """A spec for ``fullname`` if it lies in this load's package and exists on disk, else ``None``."""
        if not self.owns(fullname):
            return None
        location = self.location(fullname)
        module_file = location.parent / f"{location.name}.py"
        if fullname == self.root:
            return self._spec(fullname, None, package_dir=location)  # never run the root's __init__.py
        if (location / "__init__.py").is_file():
            return self._spec(fullname, location / "__init__.py", package_dir=location)
        if module_file.is_file():
            return self._spec(fullname, module_file)
        if location.is_dir():
            return self._spec(fullname, None, package_dir=location)
        return None

    def forget_modules(self) -> None:
        """Remove this load's modules from ``sys.modules``."""
        for name in [n for n in sys.modules if self.owns(n)]:
            del sys.modules[name]

    def _spec(
        self, fullname: str, file: Path | None, package_dir: Path | None = None
    ) -> importlib.machinery.ModuleSpec:
        spec = importlib.machinery.ModuleSpec(
            fullname,
            _ConfigFileLoader(file, self),
            origin=str(file) if file else None,
            is_package=package_dir is not None,
        )
        if package_dir is not None:
            spec.submodule_search_locations = [str(package_dir)]
        spec.has_location = file is not None
        return spec


class _ConfigFileLoader(importlib.abc.Loader):
    """Executes one config file (or nothing, for a directory without ``__init__.py``)."""

    def __init__(self, file: Path | None, finder: _ConfigFinder) -> None:
        self.file = file
        self.finder = finder

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> None:
        """Use the default module creation."""
        return None

    def exec_module(self, module: ModuleType) -> None:
        """Run the file in the module's namespace; wrap a failure in a ``ConfigError`` naming the file."""
        if self.file is None:
            return
        try:
            # compile() rather than a cached .pyc: config files are small and must not litter
            # __pycache__ directories into config folders.
            code = compile(self.file.read_text(encoding="utf-8"), str(self.file), "exec")
            exec(code, vars(module))
            _dicts_to_configs(vars(module))
        except ConfigError:
            raise  # an imported config file already named itself
        except ModuleNotFoundError as e:
            if not (e.name and self.finder.owns(e.name)):
                raise ConfigError(f"Error in config file {self.file}: {error_text(e)}") from e
            # Name the missing file, not the synthetic module standing for it.
            missing = self.finder.location(e.name)
            raise ConfigError(
                f"Error in config file {self.file}: relative import of {missing}: "
                "no such config file (.py) or directory"
            ) from e
        except Exception as e:
            raise ConfigError(f"Error in config file {self.file}: {error_text(e)}") from e


def _dicts_to_configs(namespace: dict) -> None:
    """Turn a config file's top-level plain dicts into DictConfigs.

    So a file importing ``train = dict(max_iter=...)`` from another can write
    ``train.max_iter = 100`` (attribute access), as with any LazyCall node.
    """
    for name, value in list(namespace.items()):
        if not name.startswith("_") and type(value) is dict:
            namespace[name] = DictConfig(value, flags={"allow_objects": True})
