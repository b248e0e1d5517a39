"""Find a config file by path or by its name inside the configs shipped with rcnnzoo."""

from __future__ import annotations

import os
from pathlib import Path

import rcnnzoo
from rcnnzoo.utils.registry import did_you_mean

__all__ = ["resolve_config_path", "configs_root"]

_CONFIG_SUFFIXES = (".py", ".yaml", ".yml")


def configs_root() -> Path:
    """The directory of the configs shipped with rcnnzoo (``rcnnzoo/model_zoo/configs``)."""
    return Path(rcnnzoo.__file__).parent / "model_zoo" / "configs"


def resolve_config_path(name: str | os.PathLike, root: str | os.PathLike | None = None) -> Path:
    """Return the config file that ``name`` refers to.

    ``name`` is either an existing file, or a path relative to the shipped configs directory,
    e.g. ``"COCO-Detection/faster_rcnn_R_50_FPN_1x.py"`` (the ``.py`` may be left out, and a
    leading ``configs/`` is accepted).

    Args:
        name: a file path or a shipped config name.
        root: the configs directory to search; default :func:`configs_root`.

    Raises:
        FileNotFoundError: nothing matches; the message lists the paths tried and up to three
            close matches among the available config files.
    """
    if Path(name).is_file():
        return Path(name)
    root = Path(root) if root is not None else configs_root()
    tried = [Path(name).absolute()] + [root / rel for rel in _candidates(Path(name).as_posix())]
    for path in tried[1:]:
        if path.is_file():
            return path
    available = _available_configs(root)
    raise FileNotFoundError(
        f"Config {str(name)!r} not found. Tried: {', '.join(str(p) for p in tried)}."
        f"{did_you_mean(Path(name).as_posix(), available)}"
    )


def _candidates(name: str) -> list[str]:
    names = [name, name.removeprefix("configs/")] if name.startswith("configs/") else [name]
    with_suffix = [n + ".py" for n in names if not n.endswith(_CONFIG_SUFFIXES)]
    return list(dict.fromkeys(names + with_suffix))


def _available_configs(root: Path) -> list[str]:
    if not root.is_dir():
        return []
    return sorted(
        p.relative_to(root).as_posix()
        for p in root.rglob("*")
        if p.suffix in _CONFIG_SUFFIXES and p.name != "__init__.py" and p.is_file()
    )
