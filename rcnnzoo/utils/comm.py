"""Helpers for multi-process (``torch.distributed``) code that also run in a single process.

Every function works whether or not a process group is initialized: without one the
world has size 1, this process is rank 0 and the main process, and the collectives
return what a one-process world would (``all_gather(x) == [x]``).

Objects are exchanged with ``torch.distributed.all_gather_object`` / ``gather_object``,
which pickle them, so any picklable Python object can be gathered (lists of COCO json
entries, dicts of numpy arrays, ...). With the NCCL backend those collectives move the
pickled bytes through the current CUDA device; gloo works on the CPU.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.distributed as dist

__all__ = [
    "get_world_size",
    "get_rank",
    "is_main_process",
    "synchronize",
    "all_gather",
    "gather",
    "shared_random_seed",
]


def _is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def get_world_size() -> int:
    """The number of processes in the default group (1 without torch.distributed)."""
    return dist.get_world_size() if _is_distributed() else 1


def get_rank() -> int:
    """This process's rank in the default group (0 without torch.distributed)."""
    return dist.get_rank() if _is_distributed() else 0


def is_main_process() -> bool:
    """True on rank 0: the process that logs, writes files and returns evaluation results."""
    return get_rank() == 0


def synchronize() -> None:
    """Barrier across all processes; a no-op in a one-process world."""
    if get_world_size() == 1:
        return
    if dist.get_backend() == dist.Backend.NCCL and torch.cuda.is_available():
        # Without device_ids NCCL guesses the device from the rank, which is wrong when
        # several processes share a node with a custom device mapping.
        dist.barrier(device_ids=[torch.cuda.current_device()])
    else:
        dist.barrier()


def all_gather(obj: Any) -> list[Any]:
    """Gather a picklable object from every process, on every process.

    Returns:
        list of length world_size: ``result[r]`` is the object rank ``r`` passed.
    """
    world_size = get_world_size()
    if world_size == 1:
        return [obj]
    output: list[Any] = [None] * world_size
    dist.all_gather_object(output, obj)
    return output


def gather(obj: Any, dst: int = 0) -> list[Any]:
    """Gather a picklable object from every process onto rank ``dst``.

    Returns:
        on rank ``dst``, a list of length world_size (``result[r]`` from rank ``r``);
        on other ranks, an empty list.
    """
    world_size = get_world_size()
    if world_size == 1:
        return [obj]
    rank = get_rank()
    output: list[Any] | None = [None] * world_size if rank == dst else None
    dist.gather_object(obj, output, dst=dst)
    return output if rank == dst else []


def shared_random_seed() -> int:
    """A random int in [0, 2**31) that is the same on every process.

    Each process draws one, and all use rank 0's draw: useful to seed augmentations or
    samplers that must agree across processes.
    """
    seed = int(np.random.randint(2**31))
    return int(all_gather(seed)[0])
