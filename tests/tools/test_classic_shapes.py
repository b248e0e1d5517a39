"""R-CNN, SPPnet and Fast R-CNN trained on the shapes dataset as a user would run them (slow).

Each test runs the README's commands in subprocesses: selective search proposals for shapes train
and val precomputed once (``tools/precompute_proposals.py``, about 3 minutes on 2 cores), then one
``tools/train_net.py`` command per system, and checks shapes-val ``bbox/AP50 >= 0.6`` (issue #5).
The wall time of each command is printed (``pytest -s``); the issue's budget is 20 minutes each.

Run them with ``python -m pytest -m slow tests/tools/test_classic_shapes.py -s``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SS_CONFIG = "Classic/selective_search_shapes.py"
AP50_BAR = 0.6

pytestmark = pytest.mark.slow


def _run(args: list[str], cwd: Path) -> float:
    """Run ``python <args>`` in ``cwd``; return its wall time in seconds, fail with its log tail."""
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, *args], cwd=cwd, capture_output=True, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"}
    )
    elapsed = time.perf_counter() - start
    assert proc.returncode == 0, f"{args} failed:\n{(proc.stdout + proc.stderr)[-4000:]}"
    return elapsed


@pytest.fixture(scope="module")
def proposal_files(tmp_path_factory) -> dict[str, str]:
    """Selective search proposals of shapes_train and shapes_val, computed once for the module."""
    out = tmp_path_factory.mktemp("proposals")
    files = {}
    for split in ("train", "val"):
        files[split] = str(out / f"selective_search_shapes_{split}.npz")
        seconds = _run(
            [
                "tools/precompute_proposals.py",
                f"--config-file={SS_CONFIG}",
                f"--dataset=shapes_{split}",
                f"--output={files[split]}",
                "--num-workers=2",
            ],
            REPO,
        )
        print(f"\nselective search, shapes_{split}: {seconds:.0f} s")
    return files


@pytest.mark.parametrize(
    "config",
    ["Classic/fast_rcnn_tiny_shapes.py", "Classic/sppnet_tiny_shapes.py", "Classic/rcnn_tiny_shapes.py"],
)
def test_trains_from_one_command_to_the_ap_bar(config, proposal_files, tmp_path):
    seconds = _run(
        [
            "tools/train_net.py",
            f"--config-file={config}",
            f"train.output_dir={tmp_path}",
            f"dataloader.train.dataset.proposal_files=[{proposal_files['train']}]",
            f"dataloader.test.dataset.proposal_files=[{proposal_files['val']}]",
        ],
        REPO,
    )
    with open(tmp_path / "final_results.json", encoding="utf-8") as f:
        results = json.load(f)
    print(f"\n{config}: {seconds / 60:.1f} min, bbox/AP50 {results['bbox/AP50']:.3f}, bbox/AP {results['bbox/AP']:.3f}")
    assert results["bbox/AP50"] >= AP50_BAR, results
    assert (tmp_path / "model_final.pth").is_file()
