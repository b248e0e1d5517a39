"""tools/infer.py end to end: a folder of images in, COCO results json, image list and drawings out,
with the class names and category ids that the checkpoint carries."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from rcnnzoo.checkpoint import Checkpointer
from rcnnzoo.config import instantiate
from rcnnzoo.model_zoo import get_config
from rcnnzoo.tools import infer

REPO = Path(__file__).resolve().parents[2]
CLASSES = ["ant", "bee", "cat"]
DATASET_IDS = {3: 0, 7: 1, 42: 2}  # the dataset's own category ids -> contiguous labels
# The quick-start model on ~64 px inputs, keeping up to 10 detections per image whatever their score.
OVERRIDES = [
    "dataloader.test.mapper.augmentations.0.short_edge_length=64",
    "dataloader.test.mapper.augmentations.0.max_size=128",
    "model.roi_heads.box_predictor.test_score_thresh=0.0",
    "model.roi_heads.box_predictor.test_topk_per_image=10",
    "train.device=cpu",
]
IMAGES = {"b.png": (48, 64), "a.jpg": (64, 40), "c.bmp": (50, 50)}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """Random weights of the config's model, with the class metadata training writes."""
    torch.manual_seed(0)
    model = instantiate(get_config("Shapes/faster_rcnn_tiny_fpn.py").model)
    folder = tmp_path_factory.mktemp("ckpt")
    Checkpointer(model, str(folder)).save("model_final")
    path = folder / "model_final.pth"
    data = torch.load(path, weights_only=True)
    data["metadata"] = {
        "thing_classes": CLASSES,
        "thing_dataset_id_to_contiguous_id": DATASET_IDS,
        "dataset_names": ["bugs_train"],
    }
    torch.save(data, path)
    return path


@pytest.fixture(scope="module")
def image_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for name, (h, w) in IMAGES.items():
        cv2.imwrite(str(folder / name), rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
    (folder / "notes.txt").write_text("not an image")
    return folder


@pytest.fixture
def restore_rcnnzoo_logger():
    """main() configures the "rcnnzoo" logger (handlers, propagate=False); undo it after the test."""
    log = logging.getLogger("rcnnzoo")
    handlers, propagate, level = list(log.handlers), log.propagate, log.level
    yield
    for h in list(log.handlers):
        if h not in handlers:
            log.removeHandler(h)
    log.propagate, log.level = propagate, level


def test_new_process_reads_class_metadata_from_the_checkpoint(checkpoint, image_dir, tmp_path) -> None:
    out = tmp_path / "out"
    command = [
        sys.executable,
        str(REPO / "tools" / "infer.py"),
        "--config-file=Shapes/faster_rcnn_tiny_fpn.py",
        f"--weights={checkpoint}",
        f"--output={out}",
        "--batch-size=2",
        "--score-thresh=0",
        "--input",
        str(image_dir),
        *OVERRIDES,  # after --input, as users type them
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]

    listed = json.loads((out / "images.json").read_text())
    names = sorted(IMAGES)  # sorted by file name, the .txt skipped
    assert [Path(im["file_name"]).name for im in listed["images"]] == names
    assert [im["id"] for im in listed["images"]] == [0, 1, 2]
    assert [(im["height"], im["width"]) for im in listed["images"]] == [IMAGES[n] for n in names]
    assert listed["categories"] == [
        {"id": 3, "name": "ant"},
        {"id": 7, "name": "bee"},
        {"id": 42, "name": "cat"},
    ]
    assert listed["metadata_source"] == "checkpoint"

    detections = json.loads((out / "detections.json").read_text())
    assert {d["image_id"] for d in detections} == {0, 1, 2}
    assert {d["category_id"] for d in detections} <= set(DATASET_IDS) and 3 <= len(detections) <= 30
    for d in detections:
        assert set(d) == {"image_id", "file_name", "category_id", "bbox", "score"}
        assert Path(d["file_name"]).name == names[d["image_id"]]
        x, y, w, h = d["bbox"]
        height, width = IMAGES[names[d["image_id"]]]
        assert w > 0 and h > 0 and x >= 0 and y >= 0 and x + w <= width + 1e-3 and y + h <= height + 1e-3
    for im in listed["images"]:
        assert (out / im["drawing"]).stat().st_size > 0


def test_folder_end_to_end_in_process(checkpoint, image_dir, tmp_path, monkeypatch, restore_rcnnzoo_logger):
    drawn = []

    def draw(image, instances, class_names=None, score_threshold=0.0):
        drawn.append((image.shape, class_names, instances.pred_classes.tolist()))
        return image

    monkeypatch.setattr(infer, "draw_instances", draw)
    args = ["--config-file=Shapes/faster_rcnn_tiny_fpn.py", f"--weights={checkpoint}", f"--output={tmp_path}"]
    result = infer.main([*args, "--score-thresh=0.0", "--input", str(image_dir), *OVERRIDES])

    assert [Path(p).name for p in result["drawings"]] == ["a.png", "b.png", "c.png"]
    assert all(Path(p).stat().st_size > 0 for p in result["drawings"])
    # Pictures get the checkpoint's names, at each image's original size.
    assert [d[1] for d in drawn] == [CLASSES] * 3
    assert [d[0][:2] for d in drawn] == [IMAGES[n] for n in sorted(IMAGES)]
    detections = json.loads(Path(result["detections"]).read_text())
    # detections.json carries the dataset's own ids of the labels drawn, in the same order.
    dataset_id_of = {label: dataset_id for dataset_id, label in DATASET_IDS.items()}
    assert [d["category_id"] for d in detections] == [dataset_id_of[c] for d in drawn for c in d[2]]
    assert len(detections) == sum(len(d[2]) for d in drawn) > 0


def test_score_threshold_and_no_draw(checkpoint, image_dir, tmp_path, restore_rcnnzoo_logger) -> None:
    args = ["--config-file=Shapes/faster_rcnn_tiny_fpn.py", f"--weights={checkpoint}", f"--output={tmp_path}"]
    everything = infer.main([*args, "--no-draw", "--score-thresh=0", "--input", str(image_dir), *OVERRIDES])
    scores = sorted(d["score"] for d in json.loads(Path(everything["detections"]).read_text()))
    middle = scores[len(scores) // 2]
    some = infer.main([*args, "--no-draw", f"--score-thresh={middle}", "--input", str(image_dir), *OVERRIDES])
    kept = json.loads(Path(some["detections"]).read_text())
    assert len(kept) == sum(s >= middle for s in scores) and all(d["score"] >= middle for d in kept)
    assert everything["drawings"] == [] and not list(tmp_path.glob("*.png"))
    images = json.loads(Path(some["images"]).read_text())["images"]
    assert [im["drawing"] for im in images] == [None] * 3


def test_unreadable_image_is_an_error_naming_it(checkpoint, image_dir, tmp_path, restore_rcnnzoo_logger):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"this is no jpeg")
    args = [
        "--config-file=Shapes/faster_rcnn_tiny_fpn.py",
        f"--weights={checkpoint}",
        f"--output={tmp_path / 'o'}",
    ]
    with pytest.raises(OSError, match="broken.jpg"):
        infer.main([*args, "--input", str(image_dir / "a.jpg"), str(broken), *OVERRIDES])
    with pytest.raises(FileNotFoundError, match="missing.png"):
        infer.main([*args, "--input", str(tmp_path / "missing.png"), *OVERRIDES])


def test_list_images_and_trailing_overrides(image_dir, tmp_path) -> None:
    assert [Path(p).name for p in infer.list_images([str(image_dir)])] == sorted(IMAGES)
    assert infer.list_images([str(image_dir / "c.bmp"), str(image_dir / "a.jpg")]) == [
        str(image_dir / "c.bmp"),
        str(image_dir / "a.jpg"),
    ]
    assert [Path(p).name for p in infer.list_images([str(image_dir / "*.png")])] == ["b.png"]
    with pytest.raises(FileNotFoundError, match="No image files"):
        infer.list_images([str(tmp_path)])

    args = infer.build_parser().parse_args(
        ["--config-file=x.py", "--output=o", "--input", "d/", "e.jpg", "train.device=cpu", "+a.b=1"]
    )
    infer.split_trailing_overrides(args)
    assert args.input == ["d/", "e.jpg"] and args.opts == ["train.device=cpu", "+a.b=1"]
