"""Start one process per device and join them into a torch.distributed group.

Two ways to run on several devices or machines:

* :func:`launch` spawns the processes itself (``tools/train_net.py --num-gpus 8``; on several
  machines, run it on each with ``--num-machines``, ``--machine-rank`` and a shared ``--dist-url``);
* ``torchrun`` spawns them and sets ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``/``MASTER_ADDR``/``MASTER_PORT``;
  :func:`launch` then runs ``main_func`` once in this process after joining the group from those
  variables (``init_method="env://"``).
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from rcnnzoo.utils.comm import synchronize

__all__ = ["launch", "launched_by_torchrun", "find_free_port"]

_TORCHRUN_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")

logger = logging.getLogger(__name__)


def find_free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now (another process could still take it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launched_by_torchrun() -> bool:
    """Whether a launcher such as ``torchrun`` started this process (it set ``RANK``, ``WORLD_SIZE``,
    ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``)."""
    return all(v in os.environ for v in _TORCHRUN_VARS)


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
) -> Any:
    """Run ``main_func(*args)`` in ``num_gpus_per_machine`` processes on each of ``num_machines`` machines.

    With a world size of 1 it simply calls ``main_func(*args)``. Otherwise it spawns one process per
    local device; each joins the default process group (NCCL with CUDA, Gloo on CPU, where
    "gpus" means processes) and owns ``cuda:<local_rank>``.

    Started by ``torchrun`` (see :func:`launched_by_torchrun`), it spawns nothing: this process joins
    the group torchrun describes and runs ``main_func`` once; the process counts given here are
    ignored (torchrun's ``--nproc-per-node``/``--nnodes`` decide).

    Args:
        main_func: a module-level function (it is pickled into the child processes).
        num_gpus_per_machine: processes per machine.
        num_machines: machines taking part.
        machine_rank: this machine's index in ``[0, num_machines)``.
        dist_url: rendezvous address ``tcp://host:port``; ``None``/``"auto"`` picks a free local
            port (single machine only).
        args: positional arguments of ``main_func``.
        timeout: how long collective operations wait before failing.

    Returns:
        What ``main_func`` returned when it ran in this process (one process, or torchrun), else None.
    """
    world_size = num_machines * num_gpus_per_machine
    if launched_by_torchrun() and not dist.is_initialized():
        if world_size > 1:
            logger.warning(
                f"Started by torchrun: ignoring num_gpus_per_machine={num_gpus_per_machine} and "
                f"num_machines={num_machines}; WORLD_SIZE={os.environ['WORLD_SIZE']} from torchrun applies"
            )
        return _torchrun_worker(main_func, args, timeout)
    if world_size <= 1:
        return main_func(*args)
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
    return None


def _init_process_group(local_rank: int, init_method: str, timeout: timedelta, **kwargs: Any) -> None:
    use_cuda = torch.cuda.is_available()
    if use_cuda:
        # Before init_process_group, so NCCL binds this process to its own device.
        torch.cuda.set_device(local_rank)
    dist.init_process_group(
        backend="nccl" if use_cuda else "gloo", init_method=init_method, timeout=timeout, **kwargs
    )


def _torchrun_worker(main_func: Callable[..., Any], args: tuple[Any, ...], timeout: timedelta) -> Any:
    _init_process_group(int(os.environ["LOCAL_RANK"]), "env://", timeout)
    try:
        synchronize()
        return main_func(*args)
    finally:
        dist.destroy_process_group()


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
    if torch.cuda.is_available() and num_gpus_per_machine > torch.cuda.device_count():
        raise RuntimeError(
            f"Asked for {num_gpus_per_machine} GPUs per machine but {torch.cuda.device_count()} are visible"
        )
    global_rank = machine_rank * num_gpus_per_machine + local_rank
    _init_process_group(local_rank, dist_url, timeout, world_size=world_size, rank=global_rank)
    try:
        synchronize()
        main_func(*args)
    finally:
        dist.destroy_process_group()
