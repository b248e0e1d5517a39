"""SIGKILL a training process while it writes checkpoints, then resume from what is on disk."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time

import torch
from engine_toys import RandomizedRegressor
from engine_train_script import WIDTH, build_cfg

from rcnnzoo.checkpoint import Checkpointer
from rcnnzoo.engine import do_train

SCRIPT = os.path.join(os.path.dirname(__file__), "engine_train_script.py")


def _writing(output_dir: str) -> bool:
    """Whether a checkpoint is being written: its temporary file exists."""
    return any(n.endswith(".tmp") for n in os.listdir(output_dir))


def _train_until_killed(
    output_dir: str, after_checkpoints: int, delay: float, mid_write: bool = False
) -> None:
    """Start the training script; SIGKILL it ``delay`` s after ``after_checkpoints`` new checkpoints
    (and, with ``mid_write``, once a checkpoint is being written)."""
    pointer = os.path.join(output_dir, "last_checkpoint")

    def current() -> str | None:
        try:
            with open(pointer, encoding="utf-8") as f:
                return f.read()
        except FileNotFoundError:
            return None

    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, SCRIPT, output_dir, "100000"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        seen = [current()]
        deadline = time.monotonic() + 60
        while len(set(seen)) <= after_checkpoints:  # wait for `after_checkpoints` new pointer values
            assert proc.poll() is None, f"training died on its own:\n{proc.stderr.read().decode()[-3000:]}"
            assert time.monotonic() < deadline, "no checkpoint within 60 s"
            time.sleep(0.005)
            seen.append(current())
        time.sleep(delay)
        while mid_write and not _writing(output_dir) and time.monotonic() < deadline:
            time.sleep(0.001)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL


def _pointed_checkpoint(output_dir: str) -> dict:
    with open(os.path.join(output_dir, "last_checkpoint"), encoding="utf-8") as f:
        name = f.read()
    return torch.load(os.path.join(output_dir, name), weights_only=True)  # whole and readable


def test_sigkill_while_checkpointing_then_resume(tmp_path) -> None:
    out = str(tmp_path)
    rng = random.Random()  # a different moment each run; the delays are reported on failure
    delays = [rng.uniform(0.0, 0.25) for _ in range(2)]

    # Killed twice: the second process resumes from the first one's leftovers before it is killed.
    _train_until_killed(out, after_checkpoints=2, delay=delays[0])
    first = _pointed_checkpoint(out)["iteration"]
    _train_until_killed(out, after_checkpoints=2, delay=delays[1] / 10, mid_write=True)
    ckpt = _pointed_checkpoint(out)
    assert ckpt["iteration"] >= first + 2, delays

    # Resume here, for 3 more iterations.
    start = ckpt["iteration"] + 1
    model = RandomizedRegressor(width=WIDTH)
    do_train(build_cfg(out, start + 3), model, resume=True)
    final = _pointed_checkpoint(out)
    assert final["iteration"] == start + 2, delays
    assert model.calls == 3  # iterations start .. start + 2, nothing replayed
    report = Checkpointer(RandomizedRegressor(width=WIDTH)).load(os.path.join(out, "model_final.pth"))
    assert not report.missing_keys

    # Whatever the kill interrupted is at most a stray temporary file, never a named checkpoint.
    for name in os.listdir(out):
        if name.endswith(".pth"):
            torch.load(os.path.join(out, name), weights_only=True)
        else:
            assert name in ("last_checkpoint", "metrics.json") or name.startswith(("events.out", ".")), name
