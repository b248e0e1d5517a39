"""launch(): one process runs inline; several join a gloo group on the CPU."""

from __future__ import annotations

import os

import torch
import torch.distributed as dist

from rcnnzoo.engine import launch
from rcnnzoo.utils.comm import get_rank, get_world_size


def _report(out_dir: str) -> None:
    """Each rank writes its rank, the world size and an all-reduced sum (module level: spawn pickles it)."""
    value = torch.tensor([float(get_rank() + 1)])
    if get_world_size() > 1:
        dist.all_reduce(value)
    with open(os.path.join(out_dir, f"rank{get_rank()}.txt"), "w", encoding="utf-8") as f:
        f.write(f"{get_rank()} {get_world_size()} {value.item():g}")


def test_single_process_runs_inline(tmp_path) -> None:
    launch(_report, num_gpus_per_machine=1, args=(str(tmp_path),))
    assert (tmp_path / "rank0.txt").read_text() == "0 1 1"
    assert not dist.is_initialized()


def test_two_cpu_processes_form_a_gloo_group(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # only affects this process
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # children: gloo on the CPU
    launch(_report, num_gpus_per_machine=2, dist_url="auto", args=(str(tmp_path),))
    assert (tmp_path / "rank0.txt").read_text() == "0 2 3"
    assert (tmp_path / "rank1.txt").read_text() == "1 2 3"


def _rank_and_size() -> tuple[int, int]:
    return get_rank(), get_world_size()


def test_under_torchrun_env_it_joins_the_group_from_the_environment(monkeypatch) -> None:
    from rcnnzoo.engine import launched_by_torchrun
    from rcnnzoo.engine.launch import find_free_port

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert not launched_by_torchrun()
    env = {"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1"}
    for key, value in {**env, "MASTER_PORT": str(find_free_port())}.items():
        monkeypatch.setenv(key, value)
    assert launched_by_torchrun()
    # process counts given to launch are ignored: torchrun's WORLD_SIZE applies
    assert launch(_rank_and_size, num_gpus_per_machine=4) == (0, 1)
    assert not dist.is_initialized()  # the group is destroyed afterwards


TORCHRUN_SCRIPT = """
import os, sys
import torch, torch.distributed as dist
from rcnnzoo.engine import launch
from rcnnzoo.utils.comm import get_rank, get_world_size

def report(out_dir):
    value = torch.tensor([float(get_rank() + 1)])
    dist.all_reduce(value)
    with open(os.path.join(out_dir, f"rank{get_rank()}.txt"), "w") as f:
        f.write(f"{get_rank()} {get_world_size()} {value.item():g} {dist.get_backend()}")

launch(report, num_gpus_per_machine=1, args=(sys.argv[1],))
"""


def test_two_processes_started_by_torchrun(tmp_path) -> None:
    import subprocess
    import sys

    script = tmp_path / "script.py"
    script.write_text(TORCHRUN_SCRIPT)
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    done = subprocess.run(
        [*cmd, str(script), str(tmp_path)], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "rank0.txt").read_text() == "0 2 3 gloo"
    assert (tmp_path / "rank1.txt").read_text() == "1 2 3 gloo"
