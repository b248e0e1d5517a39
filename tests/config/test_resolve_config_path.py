"""resolve_config_path: files as given, names inside the shipped configs, and helpful misses."""

from __future__ import annotations

from pathlib import Path

import pytest

import rcnnzoo
from rcnnzoo.config import configs_root, resolve_config_path


@pytest.fixture
def root(tmp_path: Path) -> Path:
    for rel in [
        "COCO-Detection/faster_rcnn_R_50_FPN_1x.py",
        "COCO-Detection/mask_rcnn_R_50_FPN_1x.py",
        "a/b.yaml",
    ]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("x = 1\n")
    return tmp_path


def test_existing_file_is_returned_as_is(tmp_path: Path):
    f = tmp_path / "mine.py"
    f.write_text("")
    assert resolve_config_path(f) == f
    assert resolve_config_path(str(f)) == f


@pytest.mark.parametrize(
    "name",
    [
        "COCO-Detection/faster_rcnn_R_50_FPN_1x.py",
        "COCO-Detection/faster_rcnn_R_50_FPN_1x",
        "configs/COCO-Detection/faster_rcnn_R_50_FPN_1x.py",
    ],
)
def test_name_inside_the_configs_directory(root: Path, name: str, monkeypatch):
    monkeypatch.chdir(root.parent)  # not the repository root, where configs/... exists as a file
    assert resolve_config_path(name, root=root) == root / "COCO-Detection/faster_rcnn_R_50_FPN_1x.py"


def test_miss_lists_tried_paths_and_close_matches(root: Path):
    with pytest.raises(FileNotFoundError) as info:
        resolve_config_path("COCO-Detection/faster_rcnn_R_50_FPN_1.py", root=root)
    msg = str(info.value)
    assert f"Tried: {Path('COCO-Detection/faster_rcnn_R_50_FPN_1.py').absolute()}, {root}" in msg
    assert "Did you mean 'COCO-Detection/faster_rcnn_R_50_FPN_1x.py'" in msg


def test_default_root_is_the_packaged_configs_directory():
    assert configs_root() == Path(rcnnzoo.__file__).parent / "model_zoo" / "configs"
    assert configs_root().is_dir()
