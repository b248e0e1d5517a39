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
