"""Checkpointable training state beyond the model and optimizer: RNG states, per-process states.

An exact resume needs every random stream training draws from: Python's ``random``, NumPy's global
RNG, torch's CPU generator and the current CUDA device's generator (:class:`RNGState`), plus the
position of the data loader. Both differ between processes, so :class:`PerRankState` gathers them
from every rank into the one checkpoint rank 0 writes, and hands each rank its own on loading.

Everything is stored as tensors and plain Python values, so checkpoints stay loadable with
``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import contextlib
import logging
import random
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from rcnnzoo.utils.comm import gather, get_rank, get_world_size

__all__ = ["RNGState", "PerRankState", "get_rng_state", "set_rng_state", "preserved_rng_state"]

logger = logging.getLogger(__name__)


def _cuda_in_use() -> bool:
    return torch.cuda.is_available() and torch.cuda.is_initialized()


def get_rng_state() -> dict[str, Any]:
    """This process's global RNG states as tensors and plain values.

    Returns:
        ``{"python": int64[625], "python_version": int, "python_gauss": float | None,
        "numpy": int64[624], "numpy_pos": int, "numpy_gauss": float | None,
        "torch": uint8[K], "cuda": uint8[K'] | None}`` (CUDA: the current device only).
    """
    version, py_state, gauss = random.getstate()
    _, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    return {
        "python": torch.tensor(py_state, dtype=torch.int64),
        "python_version": int(version),
        "python_gauss": gauss,
        "numpy": torch.from_numpy(np_keys.astype(np.int64)),
        "numpy_pos": int(np_pos),
        "numpy_gauss": float(np_gauss) if np_has_gauss else None,
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state() if _cuda_in_use() else None,
    }


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore the states returned by :func:`get_rng_state` (CUDA only where CUDA is in use)."""
    random.setstate(
        (state["python_version"], tuple(int(v) for v in state["python"].tolist()), state["python_gauss"])
    )
    gauss = state["numpy_gauss"]
    np.random.set_state(
        (
            "MT19937",
            state["numpy"].numpy().astype(np.uint32),
            int(state["numpy_pos"]),
            int(gauss is not None),
            float(gauss or 0.0),
        )
    )
    torch.set_rng_state(state["torch"])
    if state.get("cuda") is not None and _cuda_in_use():
        torch.cuda.set_rng_state(state["cuda"])


@contextlib.contextmanager
def preserved_rng_state() -> Iterator[None]:
    """Run a block without changing the global random streams (e.g. an evaluation during training).

    With it, training draws the same random numbers whether or not (and how often) it evaluates.
    """
    state = get_rng_state()
    try:
        yield
    finally:
        set_rng_state(state)


class RNGState:
    """A checkpointable for this process's global RNG states (see :func:`get_rng_state`)."""

    def state_dict(self) -> dict[str, Any]:
        return get_rng_state()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        set_rng_state(state)


class PerRankState:
    """Checkpoint one state per process: ``state_dict`` gathers every rank's onto rank 0.

    ``state_dict()`` is a collective call (``is_collective``): :class:`~rcnnzoo.checkpoint.Checkpointer`
    then expects ``save`` on every rank at the same time, as the periodic checkpointer does.
    ``load_state_dict`` gives each rank the state it saved. A checkpoint from another number of
    processes gives rank ``r`` the state of rank ``r % saved_world_size`` (with a warning): training
    continues, but not exactly as it would have.
    """

    is_collective = True

    def __init__(self, obj: Any) -> None:
        """
        Args:
            obj: has ``state_dict()`` and ``load_state_dict()`` (e.g. :class:`RNGState`, a data loader).
        """
        self.obj = obj

    def state_dict(self) -> dict[str, Any]:
        """``{"world_size": int, "ranks": [state of rank 0, state of rank 1, ...]}`` (complete on rank 0)."""
        return {"world_size": get_world_size(), "ranks": gather(self.obj.state_dict())}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        ranks = state["ranks"]
        rank, world_size = get_rank(), get_world_size()
        if len(ranks) != world_size:
            logger.warning(
                f"{type(self.obj).__name__}: the checkpoint holds the states of {len(ranks)} processes, "
                f"this run has {world_size}; rank {rank} continues from rank {rank % len(ranks)}'s state."
            )
        self.obj.load_state_dict(ranks[rank % len(ranks)])
