"""Samplers: which dataset indices each rank (process) reads, for training and for inference."""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterator

import torch
from torch.utils.data import Sampler

from rcnnzoo.utils.comm import get_rank, get_world_size, shared_random_seed

__all__ = ["TrainingSampler", "InferenceSampler"]

logger = logging.getLogger(__name__)


class TrainingSampler(Sampler[int]):
    """An infinite stream of indices in ``[0, size)``, reshuffled every epoch.

    Every rank draws the same permutations (same seed) and keeps every ``world_size``-th index
    starting at its rank, so together the ranks read each epoch once, without overlap. Training
    is measured in iterations, not epochs, so the stream never ends.

    The stream is a pure function of ``(seed, size, shuffle, rank, world_size)``; :meth:`indices`
    starts it at any position (for resuming) and :meth:`state_dict` holds the seed, which is all a
    checkpoint needs besides the position.

    Args:
        size: number of items in the dataset.
        shuffle: if False, cycle through ``0..size-1`` in order.
        seed: seed of the shuffling; must be the same on all ranks. ``None`` draws one on rank 0
            and shares it.
    """

    def __init__(self, size: int, shuffle: bool = True, seed: int | None = None):
        if size <= 0:
            raise ValueError(f"TrainingSampler needs a non-empty dataset, got size={size}")
        self._size = size
        self._shuffle = shuffle
        self._seed = int(seed) if seed is not None else shared_random_seed()
        self._rank = get_rank()
        self._world_size = get_world_size()

    @property
    def seed(self) -> int:
        """The shuffling seed (drawn at construction when none was given)."""
        return self._seed

    def __iter__(self) -> Iterator[int]:
        return self.indices(0)

    def indices(self, start: int = 0) -> Iterator[int]:
        """This rank's stream from its ``start``-th index on (``start`` counts this rank's indices only).

        Whole epochs before ``start`` are skipped without listing their indices, so starting late in
        a long training costs one ``randperm`` per skipped epoch.
        """
        if start < 0:
            raise ValueError(f"start must be >= 0, got {start}")
        first = self._rank + start * self._world_size  # position in the stream shared by all ranks
        return itertools.islice(self._infinite_indices(first), 0, None, self._world_size)

    def _infinite_indices(self, first: int = 0) -> Iterator[int]:
        g = torch.Generator()
        g.manual_seed(self._seed)
        epoch, offset = divmod(first, self._size)
        if self._shuffle:
            for _ in range(epoch):  # advance the generator exactly as the skipped epochs did
                torch.randperm(self._size, generator=g)
        while True:
            order = torch.randperm(self._size, generator=g).tolist() if self._shuffle else range(self._size)
            yield from itertools.islice(order, offset, None)
            offset = 0

    def state_dict(self) -> dict[str, int]:
        """The seed (plain ints): the stream is rebuilt from it."""
        return {"seed": self._seed, "size": self._size}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Use the seed of a saved sampler, so a resumed run continues the same stream."""
        if int(state["size"]) != self._size:
            logger.warning(
                f"TrainingSampler: the checkpoint's dataset had {state['size']} items, this one has "
                f"{self._size}; the data order after resuming differs from an uninterrupted run."
            )
        self._seed = int(state["seed"])


class InferenceSampler(Sampler[int]):
    """Each rank gets one contiguous slice of ``range(size)``; together they cover every index once.

    Slices differ in length by at most one, so the ranks finish at about the same time, and
    contiguous slices keep the results in dataset order when gathered rank by rank.
    """

    def __init__(self, size: int):
        if size < 0:
            raise ValueError(f"InferenceSampler size must be >= 0, got {size}")
        self._size = size
        self._indices = self.shard(size, get_rank(), get_world_size())

    @staticmethod
    def shard(size: int, rank: int, world_size: int) -> range:
        """The indices of ``rank``: the first ``size % world_size`` ranks get one more."""
        per_rank, extra = divmod(size, world_size)
        begin = rank * per_rank + min(rank, extra)
        return range(begin, begin + per_rank + (1 if rank < extra else 0))

    def __iter__(self) -> Iterator[int]:
        return iter(self._indices)

    def __len__(self) -> int:
        return len(self._indices)
