"""tools/check_dataset.py: a config registering its own COCO data is checked; exit 1 on bad data."""

from __future__ import annotations

import json
import logging
import textwrap
from pathlib import Path

import cv2
import numpy as np
import pytest

from rcnnzoo.data import DatasetCatalog, MetadataCatalog
from rcnnzoo.tools import check_dataset


@pytest.fixture(autouse=True)
def restore_loggers():
    """The tool configures the 'rcnnzoo' logger (propagate=False); undo it for other tests' log capture."""
    log = logging.getLogger("rcnnzoo")
    handlers, propagate = list(log.handlers), log.propagate
    yield
    for h in log.handlers:
        if h not in handlers:
            log.removeHandler(h)
            h.close()
    log.propagate = propagate


@pytest.fixture
def registered():
    """Names registered by the configs a test writes; removed afterwards."""
    names: list[str] = []
    yield names
    for name in names:
        if name in DatasetCatalog:
            DatasetCatalog.remove(name)
        if name in MetadataCatalog:
            MetadataCatalog.remove(name)


def _dataset(root: Path, bad: bool) -> tuple[Path, Path]:
    """Two 64x48 images with three classes; ``bad`` adds a zero-width box and a missing image."""
    images_dir = root / "images"
    images_dir.mkdir(parents=True)
    images = [{"id": i, "file_name": f"{i}.png", "height": 48, "width": 64} for i in (1, 2)]
    for im in images:
        cv2.imwrite(str(images_dir / im["file_name"]), np.full((48, 64, 3), 200, np.uint8))
    anns = [
        {"id": 1, "image_id": 1, "bbox": [4, 4, 24, 24], "category_id": 1, "iscrowd": 0, "area": 1.0},
        {"id": 2, "image_id": 2, "bbox": [30, 10, 20, 30], "category_id": 3, "iscrowd": 0, "area": 1.0},
    ]
    if bad:
        anns.append(
            {"id": 3, "image_id": 2, "bbox": [5, 5, 0, 9], "category_id": 2, "iscrowd": 0, "area": 0.0}
        )
        images.append({"id": 3, "file_name": "gone.png", "height": 48, "width": 64})
    categories = [{"id": i, "name": n} for i, n in ((1, "circle"), (2, "rectangle"), (3, "triangle"))]
    json_file = root / "train.json"
    json_file.write_text(json.dumps({"images": images, "annotations": anns, "categories": categories}))
    return json_file, images_dir


def _config(root: Path, name: str, bad: bool) -> Path:
    json_file, images_dir = _dataset(root, bad)
    text = f'''
        from rcnnzoo.data import register_coco_instances
        from rcnnzoo.model_zoo import get_config

        register_coco_instances("{name}", {{}}, "{json_file}", "{images_dir}")

        cfg = get_config("Shapes/faster_rcnn_tiny_fpn.py")
        model, dataloader = cfg.model, cfg.dataloader
        dataloader.train.dataset.names = "{name}"
        dataloader.test.dataset.names = ["{name}"]
        del cfg
    '''
    path = root / "check_config.py"
    path.write_text(textwrap.dedent(text))
    return path


def test_clean_data_exits_0(tmp_path, registered, capsys):
    registered.append("check_tool_clean")
    config = _config(tmp_path, "check_tool_clean", bad=False)
    out = tmp_path / "report" / "check.json"
    assert check_dataset.main(["--config-file", str(config), "--split", "both", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "Dataset 'check_tool_clean' [train]" in text and "Dataset 'check_tool_clean' [test]" in text
    assert "All datasets OK." in text
    assert "circle: 1, rectangle: 0, triangle: 1" in text
    reports = json.loads(out.read_text())
    assert [r["ok"] for r in reports] == [True, True]  # train, then test
    assert reports[0]["anchor_coverage"]["all"]["boxes"] == 2
    assert "train scale" in reports[0]["coverage_note"] and "test scale" in reports[1]["coverage_note"]


def test_bad_data_exits_1_naming_files_and_annotation_ids(tmp_path, registered, capsys):
    registered.append("check_tool_bad")
    config = _config(tmp_path, "check_tool_bad", bad=True)
    out = tmp_path / "check.json"
    assert check_dataset.main(["--config-file", str(config), "--json", str(out)]) == 1
    text = capsys.readouterr().out
    assert "1 of 1 datasets have errors: 'check_tool_bad' [train]" in text
    assert f"{tmp_path / 'images' / '2.png'} [annotation id=3]" in text
    assert str(tmp_path / "images" / "gone.png") in text
    (report,) = json.loads(out.read_text())
    kinds = {p["kind"]: p for p in report["problems"]}
    assert {"degenerate_box", "missing_image"} <= set(kinds)
    assert kinds["degenerate_box"]["annotation_id"] == 3
    assert kinds["degenerate_box"]["json_file"] == str(tmp_path / "train.json")

    # the config's bad-box policy and overrides apply: dropping makes the boxes warnings
    argv = [
        "--config-file",
        str(config),
        "--read-images",
        "none",
        "dataloader.train.dataset.bad_boxes='drop'",
    ]
    assert check_dataset.main(argv) == 0
