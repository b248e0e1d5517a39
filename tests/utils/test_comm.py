"""rcnnzoo.utils.comm without a process group and in a 2-process gloo group."""

from __future__ import annotations

import json
import os

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from rcnnzoo.utils import comm


def test_single_process_defaults():
    assert not dist.is_initialized()
    assert comm.get_world_size() == 1
    assert comm.get_rank() == 0
    assert comm.is_main_process()
    comm.synchronize()  # a no-op, must not raise
    obj = {"a": [1, 2]}
    assert comm.all_gather(obj) == [obj]
    assert comm.gather(obj) == [obj]
    seed = comm.shared_random_seed()
    assert isinstance(seed, int) and 0 <= seed < 2**31


def _worker(rank: int, world_size: int, store_file: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store_file}", rank=rank, world_size=world_size)
    try:
        comm.synchronize()
        report = {
            "rank": comm.get_rank(),
            "world_size": comm.get_world_size(),
            "main": comm.is_main_process(),
            "all_gather": comm.all_gather({"rank": rank, "items": list(range(rank + 1))}),
            "gather": comm.gather(rank * 10, dst=0),
            "gather_to_1": comm.gather(rank, dst=1),
            "seed": comm.shared_random_seed(),
        }
        with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as f:
            json.dump(report, f)
    finally:
        dist.destroy_process_group()


def test_two_process_collectives(tmp_path):
    mp.spawn(_worker, args=(2, str(tmp_path / "store"), str(tmp_path)), nprocs=2, join=True)
    r0 = json.loads((tmp_path / "rank0.json").read_text())
    r1 = json.loads((tmp_path / "rank1.json").read_text())
    assert (r0["rank"], r1["rank"]) == (0, 1)
    assert r0["world_size"] == r1["world_size"] == 2
    assert r0["main"] and not r1["main"]
    expected = [{"rank": 0, "items": [0]}, {"rank": 1, "items": [0, 1]}]
    assert r0["all_gather"] == r1["all_gather"] == expected
    assert r0["gather"] == [0, 10] and r1["gather"] == []
    assert r0["gather_to_1"] == [] and r1["gather_to_1"] == [0, 1]
    assert r0["seed"] == r1["seed"]
