"""README's "Train on your own data" section, run as written.

The config and every command are read from README.md, pointed at a small COCO dataset whose
category ids are 3, 7 and 42, and run in order: check, train (with an AP bar), evaluate again,
predict on a folder in a new process, fine-tune from a model with another class count. A README
edit that breaks a command breaks this test.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from rcnnzoo.checkpoint import Checkpointer, read_class_metadata
from rcnnzoo.config import instantiate
from rcnnzoo.data import DatasetCatalog, MetadataCatalog
from rcnnzoo.model_zoo import get_config
from rcnnzoo.tools import check_dataset, demo, infer, train_net

REPO = Path(__file__).resolve().parents[2]
NUM_IMAGES = 24
# shapes' ids 1, 2, 3 (circle, rectangle, triangle) become a user's arbitrary ids
CATEGORY_IDS = {1: 3, 2: 7, 3: 42}
# 300 iterations, batch 4, on 24 images: short enough for the default test run.
SHORT_RUN = [
    "train.max_iter=300",
    "dataloader.train.total_batch_size=4",
    "dataloader.train.num_workers=0",
    "dataloader.test.num_workers=0",
    "lr_multiplier.warmup_length=0.1",
    "train.checkpointer.period=0",
    "train.log_period=50",
]
TOOLS = {"tools/check_dataset.py": check_dataset.main, "tools/train_net.py": train_net.main, "tools/infer.py": infer.main}


def _section() -> str:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    start = text.index("## Train on your own data")
    return text[start : text.index("\n## ", start + 1)]


def _commands(section: str) -> list[list[str]]:
    """The section's shell commands, continuation lines joined, comments dropped."""
    (bash,) = re.findall(r"```bash\n(.*?)```", section, re.S)
    joined = bash.replace("\\\n", " ")
    lines = [line.strip() for line in joined.splitlines()]
    return [shlex.split(line) for line in lines if line and not line.startswith("#")]


@pytest.fixture(scope="module")
def my_data(tmp_path_factory) -> Path:
    """``/data/mine`` of the README: the first NUM_IMAGES shapes_train images with ids 3/7/42,
    as train.json and val.json, and a folder of new images."""
    DatasetCatalog.get("shapes_train")  # generates the shapes data if needed
    meta = MetadataCatalog.get("shapes_train")
    src = json.loads(Path(meta.json_file).read_text())
    root = tmp_path_factory.mktemp("mine")
    (root / "images").mkdir()
    (root / "new_images").mkdir()
    images = src["images"][:NUM_IMAGES]
    keep = {im["id"] for im in images}
    for im in images:
        shutil.copy(Path(meta.image_root) / im["file_name"], root / "images" / im["file_name"])
    for im in src["images"][NUM_IMAGES : NUM_IMAGES + 3]:
        shutil.copy(Path(meta.image_root) / im["file_name"], root / "new_images" / im["file_name"])
    data = {
        "images": images,
        "annotations": [
            {**a, "category_id": CATEGORY_IDS[a["category_id"]]} for a in src["annotations"] if a["image_id"] in keep
        ],
        "categories": [{**c, "id": CATEGORY_IDS[c["id"]]} for c in src["categories"]],
    }
    for split in ("train", "val"):
        (root / f"{split}.json").write_text(json.dumps(data))
    return root


def _localize(text: str, root: Path) -> str:
    return (
        text.replace("/data/mine", str(root))
        .replace("./output/mine", str(root / "output"))
        .replace("output/mine", str(root / "output"))
        .replace("output/shapes_faster_rcnn_tiny_fpn/model_final.pth", str(root / "other_model.pth"))
    )


@pytest.fixture(scope="module")
def walkthrough(my_data):
    """Write the README's config, then run its commands in order; return what each returned."""
    section = _section()
    (config,) = re.findall(r"```python\n(.*?)```", section, re.S)
    (my_data / "my_dataset.py").write_text(_localize(config, my_data))
    # The fine-tune's source: a model trained on other data with 4 classes, classes saved inside.
    cfg = get_config("Shapes/faster_rcnn_tiny_fpn.py")
    cfg.model.roi_heads.num_classes = 4
    Checkpointer(instantiate(cfg.model), str(my_data)).save("other_model")

    commands = _commands(section)
    assert [c[1] for c in commands] == [
        "tools/check_dataset.py",
        "tools/train_net.py",
        "tools/train_net.py",
        "tools/infer.py",
        "tools/train_net.py",
    ]
    steps = {}
    names = ["check", "train", "evaluate", "predict", "finetune"]
    for name, command in zip(names, commands):
        assert command[0] == "python"
        argv = [_localize(a, my_data) for a in command[2:]]
        argv = [str(my_data / "my_dataset.py") if a == "my_dataset.py" else a for a in argv]
        if name == "train":
            argv += SHORT_RUN
        elif name == "evaluate":
            argv += ["dataloader.test.num_workers=0", f"train.output_dir={my_data / 'output' / 'eval'}"]
        elif name == "finetune":
            argv += [*SHORT_RUN[1:], "train.max_iter=4", f"train.output_dir={my_data / 'finetune'}"]
        if name == "predict":  # in a new process: the class names must come from the checkpoint
            run = subprocess.run(
                [sys.executable, str(REPO / command[1]), *argv], capture_output=True, text=True, cwd=my_data
            )
            assert run.returncode == 0, run.stderr[-3000:]
            steps[name] = run
            continue
        steps[name] = TOOLS[command[1]](argv)
    return my_data, steps


def test_check_passes_on_clean_data(walkthrough):
    _, steps = walkthrough
    assert steps["check"] == 0


def test_training_clears_the_ap_bar_and_keeps_the_dataset_ids(walkthrough):
    root, steps = walkthrough
    results, output = steps["train"], root / "output"
    # From scratch on 24 images for 300 iterations: a broken loss, box coding, pooler or NMS stays
    # near 0. tests/modeling/test_rcnn_overfit.py checks fitting closer.
    assert results["bbox"]["AP50"] >= 0.15, results
    records = [json.loads(line) for line in (output / "metrics.json").read_text().splitlines() if line]
    assert any("bbox/AP50" in r for r in records) and any("total_loss" in r for r in records)
    written = json.loads((output / "coco_instances_results.json").read_text())
    assert written and {d["category_id"] for d in written} <= set(CATEGORY_IDS.values())
    assert len(sorted((output / "predictions").glob("*.png"))) == 6
    saved = torch.load(output / "model_final.pth", map_location="cpu", weights_only=True)
    meta = read_class_metadata(saved)
    assert meta["thing_classes"] == ["circle", "rectangle", "triangle"]
    assert meta["thing_dataset_id_to_contiguous_id"] == {3: 0, 7: 1, 42: 2}


def test_evaluating_again_reproduces_the_final_evaluation(walkthrough):
    _, steps = walkthrough
    assert steps["evaluate"]["bbox"]["AP"] == pytest.approx(steps["train"]["bbox"]["AP"], abs=1e-6)


def test_prediction_in_a_new_process_names_the_classes_and_keeps_the_ids(walkthrough):
    root, _ = walkthrough
    out = root / "output" / "infer"
    listing = json.loads((out / "images.json").read_text())
    assert {c["name"] for c in listing["categories"]} == {"circle", "rectangle", "triangle"}
    assert {c["id"] for c in listing["categories"]} == set(CATEGORY_IDS.values())
    assert len(listing["images"]) == 3
    detections = json.loads((out / "detections.json").read_text())
    assert {d["category_id"] for d in detections} <= set(CATEGORY_IDS.values())


def test_finetune_reinitialises_only_the_predictor(walkthrough):
    root, steps = walkthrough
    assert "bbox" in steps["finetune"]
    log = (root / "finetune" / "log.txt").read_text()
    lines = [line for line in log.splitlines() if "Re-initialised" in line]
    assert len(lines) == 1, lines
    assert "roi_heads.box_predictor.cls_score.weight" in lines[0]
    assert "roi_heads.box_predictor.bbox_pred.weight" in lines[0]
    assert "backbone" not in lines[0]


def test_demo_draws_the_detections(walkthrough, tmp_path):
    root, _ = walkthrough
    images = sorted((root / "new_images").glob("*.png"))[:2]
    written = demo.main(
        [
            f"--config-file={root / 'my_dataset.py'}",
            f"--weights={root / 'output' / 'model_final.pth'}",
            "--input",
            *map(str, images),
            f"--output={tmp_path}",
        ]
    )
    assert [Path(p).name for p in written] == [p.name for p in images]
    assert all(Path(p).stat().st_size > 0 for p in written)


def test_the_commands_are_the_installed_tools():
    for command in _commands(_section()):
        assert (REPO / command[1]).is_file(), command

