"""Samplers: which dataset indices each rank (process) reads, for training and for inference."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import torch
from torch.utils.data import Sampler

from rcnnzoo.utils.comm import get_rank, get_world_size, shared_random_seed

__all__ = ["TrainingSampler", "InferenceSampler"]


class TrainingSampler(Sampler[int]):
    """An infinite stream of indices in ``[0, size)``, reshuffled every epoch.

    Every rank draws the same permutations (same seed) and keeps every ``world_size``-th index
    starting at its rank, so together the ranks read each epoch once, without overlap. Training
    is measured in iterations, not epochs, so the stream never ends.

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

    def __iter__(self) -> Iterator[int]:
        return itertools.islice(self._infinite_indices(), self._rank, None, self._world_size)

    def _infinite_indices(self) -> Iterator[int]:
        g = torch.Generator()
        g.manual_seed(self._seed)
        while True:
            if self._shuffle:
                yield from torch.randperm(self._size, generator=g).tolist()
            else:
                yield from range(self._size)


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
