"""Start one process per device and join them into a torch.distributed group."""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from rcnnzoo.utils.comm import synchronize

__all__ = ["launch", "find_free_port"]

logger = logging.getLogger(__name__)


def find_free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now (another process could still take it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _resolve_dist_url(dist_url: str | None, num_machines: int) -> str:
    if dist_url in (None, "", "auto"):
        if num_machines > 1:
            raise ValueError("--dist-url must be given explicitly (tcp://HOST:PORT) when num_machines > 1")
        return f"tcp://127.0.0.1:{find_free_port()}"
    return dist_url


def launch(
    main_func: Callable[..., Any],
    num_gpus_per_machine: int,
    num_machines: int = 1,
    machine_rank: int = 0,
    dist_url: str | None = None,
    args: tuple[Any, ...] = (),
    timeout: timedelta = timedelta(minutes=30),
) -> None:
    """Run ``main_func(*args)`` in ``num_gpus_per_machine`` processes on each of ``num_machines`` machines.

    With a world size of 1 it simply calls ``main_func(*args)``. Otherwise it spawns one process per
    local device; each joins the default process group (NCCL with CUDA, Gloo on CPU, where
    "gpus" means processes) and owns ``cuda:<local_rank>``.

    Args:
        main_func: a module-level function (it is pickled into the child processes).
        num_gpus_per_machine: processes per machine.
        num_machines: machines taking part.
        machine_rank: this machine's index in ``[0, num_machines)``.
        dist_url: rendezvous address ``tcp://host:port``; ``None``/``"auto"`` picks a free local
            port (single machine only).
        args: positional arguments of ``main_func``.
        timeout: how long collective operations wait before failing.
    """
    world_size = num_machines * num_gpus_per_machine
    if world_size <= 1:
        main_func(*args)
        return
    if not 0 <= machine_rank < num_machines:
        raise ValueError(f"machine_rank must be in [0, {num_machines}), got {machine_rank}")
    url = _resolve_dist_url(dist_url, num_machines)
    mp.start_processes(
        _distributed_worker,
        nprocs=num_gpus_per_machine,
        args=(main_func, world_size, num_gpus_per_machine, machine_rank, url, args, timeout),
        daemon=False,
        start_method="spawn",
    )


def _distributed_worker(
    local_rank: int,
    main_func: Callable[..., Any],
    world_size: int,
    num_gpus_per_machine: int,
    machine_rank: int,
    dist_url: str,
    args: tuple[Any, ...],
    timeout: timedelta,
) -> None:
    use_cuda = torch.cuda.is_available()
    if use_cuda:
        if num_gpus_per_machine > torch.cuda.device_count():
            raise RuntimeError(
                f"Asked for {num_gpus_per_machine} GPUs per machine but {torch.cuda.device_count()} are visible"
            )
        # Before init_process_group, so NCCL binds this process to its own device.
        torch.cuda.set_device(local_rank)
    global_rank = machine_rank * num_gpus_per_machine + local_rank
    dist.init_process_group(
        backend="nccl" if use_cuda else "gloo",
        init_method=dist_url,
        world_size=world_size,
        rank=global_rank,
        timeout=timeout,
    )
    try:
        synchronize()
        main_func(*args)
    finally:
        dist.destroy_process_group()
