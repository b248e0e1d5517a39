"""LazyConfig.load: Python config files with relative imports, fresh objects, keys, and errors."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest
import torch
from omegaconf import DictConfig

from rcnnzoo.config import ConfigError, LazyConfig, instantiate


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


@pytest.fixture
def two_dirs(tmp_path: Path) -> Path:
    """tmp/common/models.py and tmp/proj/{base,cfg}.py; cfg imports across both directories."""
    write(
        tmp_path / "common" / "models.py",
        """
        from rcnnzoo.config import L
        import torch

        model = L(torch.nn.Linear)(in_features=4, out_features=2)
        shared = {"steps": [1, 2]}
        """,
    )
    write(tmp_path / "proj" / "base.py", "train = dict(max_iter=100, lr=0.1)\n")
    return write(
        tmp_path / "proj" / "cfg.py",
        """
        import torch  # a module: not part of the config
        from ..common.models import model, shared
        from .base import train
        from rcnnzoo.config import L

        model.out_features = 3
        train["max_iter"] = 5
        _private = 1
        def helper():
            return 1
        class Local:
            pass
        names = ("a", "b")
        nothing = None
        source = __file__
        """,
    )


def test_relative_imports_across_directories(two_dirs: Path):
    cfg = LazyConfig.load(two_dirs)
    assert isinstance(cfg, DictConfig)
    assert set(cfg.keys()) == {"model", "shared", "train", "names", "nothing", "source"}
    assert cfg.source == str(two_dirs)
    assert cfg.train == {"max_iter": 5, "lr": 0.1}
    assert list(cfg.names) == ["a", "b"] and cfg.nothing is None
    linear = instantiate(cfg.model)
    assert isinstance(linear, torch.nn.Linear) and linear.out_features == 3


def test_two_loads_share_nothing(two_dirs: Path):
    first, second = LazyConfig.load(two_dirs), LazyConfig.load(two_dirs)
    first.model.out_features = 99
    first.shared.steps.append(3)
    assert second.model.out_features == 3 and list(second.shared.steps) == [1, 2]
    # the imported file alone still has its own value: the importer's edit did not leak into it
    assert LazyConfig.load(two_dirs.parent.parent / "common" / "models.py").model.out_features == 2
    assert not [m for m in sys.modules if m.startswith("_rcnnzoo_config_")]


def test_edits_to_a_config_file_are_seen_by_the_next_load(two_dirs: Path):
    assert LazyConfig.load(two_dirs).train.lr == 0.1
    write(two_dirs.parent / "base.py", "train = dict(max_iter=1, lr=0.5)\n")
    assert LazyConfig.load(two_dirs).train.lr == 0.5


def test_keys_select_a_value_or_a_subset(two_dirs: Path):
    assert LazyConfig.load(two_dirs, keys="train").max_iter == 5
    subset = LazyConfig.load(two_dirs, keys=["train", "names"])
    assert set(subset.keys()) == {"train", "names"}
    with pytest.raises(KeyError, match="no key 'trian'.*Did you mean 'train'"):
        LazyConfig.load(two_dirs, keys="trian")


def test_directory_names_with_dots_and_dashes(tmp_path: Path):
    write(tmp_path / "v1.2-configs" / "base.py", "x = 1\n")
    cfg_file = write(tmp_path / "v1.2-configs" / "my-exp.py", "from .base import x\ny = x + 1\n")
    assert LazyConfig.load(cfg_file) == {"x": 1, "y": 2}


def test_missing_file_names_the_path(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="nope.py"):
        LazyConfig.load(tmp_path / "nope.py")


def test_error_in_config_file_names_that_file(tmp_path: Path):
    write(tmp_path / "common" / "bad.py", "value = 1 / 0\n")
    cfg_file = write(tmp_path / "proj" / "cfg.py", "from ..common.bad import value\n")
    with pytest.raises(ConfigError) as info:
        LazyConfig.load(cfg_file)
    msg = str(info.value)
    assert f"Error in config file {tmp_path / 'common' / 'bad.py'}: ZeroDivisionError" in msg
    assert str(cfg_file) not in msg  # the innermost file is named, once
    assert isinstance(info.value.__cause__, ZeroDivisionError)


def test_syntax_error_and_missing_relative_import_name_the_file(tmp_path: Path):
    broken = write(tmp_path / "broken.py", "model = dict(\n")
    with pytest.raises(ConfigError, match=r"broken\.py.*SyntaxError"):
        LazyConfig.load(broken)
    orphan = write(tmp_path / "orphan.py", "from .does_not_exist import model\n")
    with pytest.raises(ConfigError) as info:
        LazyConfig.load(orphan)
    assert str(info.value) == (
        f"Error in config file {orphan}: relative import of {tmp_path / 'does_not_exist'}: "
        "no such config file (.py) or directory"
    )
    absolute = write(tmp_path / "absolute.py", "import no_such_module_for_rcnnzoo_tests\n")
    with pytest.raises(
        ConfigError, match="absolute.py: ModuleNotFoundError: No module named 'no_such_module"
    ):
        LazyConfig.load(absolute)


def test_unsupported_suffix(tmp_path: Path):
    with pytest.raises(ConfigError, match=r"\.py, \.yaml or \.yml"):
        LazyConfig.load(write(tmp_path / "cfg.json", "{}"))
