"""Data loaders: dataset dicts + mapper + sampler -> batches of model inputs (``list[dict]``)."""

from __future__ import annotations

import functools
import itertools
import logging
import pickle
import random
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset, Sampler, get_worker_info

from rcnnzoo.utils.comm import get_rank, get_world_size

from .catalog import DatasetCatalog, MetadataCatalog
from .samplers import InferenceSampler, TrainingSampler

__all__ = [
    "get_detection_dataset_dicts",
    "build_detection_train_loader",
    "build_detection_test_loader",
    "trivial_batch_collator",
]

logger = logging.getLogger(__name__)

Mapper = Callable[[dict], Any]


def trivial_batch_collator(batch: list) -> list:
    """Keep a batch as the list of its items (images differ in size; the model pads them)."""
    return batch


def _identity(x: Any) -> Any:
    return x


# ----------------------------------------------------------------------------- dataset dicts


def _has_instances(d: dict) -> bool:
    return any(not a.get("iscrowd", 0) for a in d.get("annotations", []))


def _log_instance_counts(names: list[str], dicts: list[dict]) -> None:
    counts = Counter(
        a["category_id"] for d in dicts for a in d.get("annotations", []) if not a.get("iscrowd", 0)
    )
    classes = None
    if len(names) == 1:
        classes = MetadataCatalog.get(names[0]).get("thing_classes")
    by_class = ", ".join(
        f"{classes[c] if classes and 0 <= c < len(classes) else c}: {n}" for c, n in sorted(counts.items())
    )
    logger.info("Instances per category in %s: %s", "+".join(names), by_class or "(none)")


def get_detection_dataset_dicts(names: str | Sequence[str], filter_empty: bool = True) -> list[dict]:
    """Load and concatenate registered datasets.

    Args:
        names: one dataset name or several.
        filter_empty: drop images with no (non-crowd) annotations; wanted for training, not for
            evaluation.

    Returns:
        the dataset dicts, in the order of ``names`` and of each dataset.
    """
    names = [names] if isinstance(names, str) else list(names)
    if not names:
        raise ValueError("get_detection_dataset_dicts needs at least one dataset name")
    dicts: list[dict] = []
    for name in names:
        loaded = DatasetCatalog.get(name)
        if not loaded:
            raise ValueError(f"Dataset {name!r} is empty")
        dicts.extend(loaded)
    has_annotations = any("annotations" in d for d in dicts)
    if filter_empty and has_annotations:
        before = len(dicts)
        dicts = [d for d in dicts if _has_instances(d)]
        logger.info(
            "Removed %d images with no usable annotations from %s; %d images left.",
            before - len(dicts),
            names,
            len(dicts),
        )
        if not dicts:
            raise ValueError(f"No images with annotations left in {names} after filter_empty")
    if has_annotations:
        _log_instance_counts(names, dicts)
    return dicts


class _SerializedList(Sequence):
    """A list of dicts kept as one pickled byte buffer.

    With forked loader workers, touching Python objects updates their refcounts and so copies
    their memory pages into every worker; one numpy buffer is never written and stays shared.
    """

    def __init__(self, items: Sequence[Any]):
        blobs = [
            np.frombuffer(pickle.dumps(x, protocol=pickle.HIGHEST_PROTOCOL), dtype=np.uint8) for x in items
        ]
        self._ends = np.cumsum([len(b) for b in blobs], dtype=np.int64)
        self._buffer = np.concatenate(blobs) if blobs else np.zeros(0, np.uint8)

    def __len__(self) -> int:
        return len(self._ends)

    def __getitem__(self, i: int) -> Any:  # type: ignore[override]
        if not -len(self) <= i < len(self):
            raise IndexError(f"index {i} out of range for {len(self)} items")
        i %= len(self)
        start = int(self._ends[i - 1]) if i > 0 else 0
        return pickle.loads(memoryview(self._buffer[start : int(self._ends[i])]))


def _as_dataset(dataset: Any, filter_empty: bool) -> Sequence:
    """Names -> dataset dicts (serialized); a list of dicts -> serialized; other sequences as they are."""
    if isinstance(dataset, str) or (
        isinstance(dataset, (list, tuple)) and dataset and all(isinstance(n, str) for n in dataset)
    ):
        return _SerializedList(get_detection_dataset_dicts(dataset, filter_empty=filter_empty))
    if isinstance(dataset, list):
        return _SerializedList(dataset)
    if hasattr(dataset, "__len__") and hasattr(dataset, "__getitem__"):
        return dataset
    raise TypeError(
        f"dataset must be dataset name(s), a list of dataset dicts or a sequence; got {type(dataset)}"
    )


# ----------------------------------------------------------------------------- datasets for DataLoader


class _MapDataset(Dataset):
    """``dataset[i]`` mapped by ``mapper``."""

    def __init__(self, dataset: Sequence, mapper: Mapper):
        self.dataset, self.mapper = dataset, mapper

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> Any:
        return self.mapper(self.dataset[i])


class _SampledMapDataset(IterableDataset):
    """Mapped items in the order of ``sampler``; loader workers split the sampler's stream.

    Worker ``k`` of ``n`` takes every ``n``-th index starting at ``k``. Items the mapper returns as
    ``None`` (a mapper's way to skip an image) are skipped.
    """

    def __init__(self, dataset: Sequence, mapper: Mapper, sampler: Sampler, seed: int | None):
        self.dataset, self.mapper, self.sampler, self.seed = dataset, mapper, sampler, seed

    def __iter__(self) -> Iterator[Any]:
        indices: Iterable[int] = iter(self.sampler)
        worker = get_worker_info()
        if worker is not None:
            indices = itertools.islice(indices, worker.id, None, worker.num_workers)
        elif self.seed is not None:
            # Loading in the main process: seed the global numpy RNG the augmentations draw from,
            # as a worker would be seeded, so that a given seed reproduces the same batches.
            # torch's RNG is left alone: the model's initialization and dropout use it.
            np.random.seed(_worker_seed(self.seed, get_rank(), 0) % 2**32)
        for i in indices:
            item = self.mapper(self.dataset[i])
            if item is not None:
                yield item


def _worker_seed(seed: int, rank: int, worker_id: int) -> int:
    return int(np.random.SeedSequence([seed, rank, worker_id]).generate_state(1)[0])


def _seed_all(seed: int) -> None:
    np.random.seed(seed % 2**32)
    random.seed(seed)
    torch.manual_seed(seed)


def _seed_worker(worker_id: int, seed: int | None, rank: int) -> None:
    """worker_init_fn: seed numpy, random and torch in each worker, differently per worker and rank."""
    if seed is None:
        # torch gives each worker base_seed + worker_id, base_seed drawn from the main process's RNG.
        _seed_all(torch.initial_seed() % 2**31)
    else:
        _seed_all(_worker_seed(seed, rank, worker_id))


def _image_is_wide(item: dict) -> bool:
    """Orientation of an item: from its (augmented) image if mapped, else from its recorded size."""
    image = item.get("image")
    if image is not None:
        h, w = image.shape[-2:]
    else:
        h, w = item["height"], item["width"]
    return w > h


class _Batches:
    """Infinite iterable of ``list[dict]`` batches from a loader of single items.

    With ``aspect_ratio_grouping``, wide (w > h) and tall (w <= h) images wait in separate
    buckets, so a batch pads little when the model stacks it.
    """

    def __init__(self, loader: DataLoader, batch_size: int, aspect_ratio_grouping: bool):
        self.loader = loader
        self.batch_size = batch_size
        self.aspect_ratio_grouping = aspect_ratio_grouping

    def __iter__(self) -> Iterator[list[dict]]:
        buckets: dict[bool, list] = {True: [], False: []}
        for item in self.loader:
            bucket = buckets[_image_is_wide(item) if self.aspect_ratio_grouping else True]
            bucket.append(item)
            if len(bucket) == self.batch_size:
                yield bucket[:]
                bucket.clear()


def build_detection_train_loader(
    *,
    dataset: Any,
    mapper: Mapper | None,
    total_batch_size: int,
    num_workers: int = 0,
    aspect_ratio_grouping: bool = True,
    sampler: Sampler | None = None,
    seed: int | None = None,
) -> Iterable[list[dict]]:
    """An infinite iterable of training batches.

    Args:
        dataset: dataset name(s) (loaded with ``filter_empty=True``), a list of dataset dicts,
            or any sequence.
        mapper: dataset dict -> model input (e.g. :class:`DatasetMapper`); ``None`` keeps the dicts.
        total_batch_size: images per iteration over all ranks; each rank gets
            ``total_batch_size // world_size``.
        num_workers: loader worker processes (0: load in this process).
        aspect_ratio_grouping: batch only images of the same orientation (w > h vs w <= h).
        sampler: index stream; default :class:`TrainingSampler` (shuffled, infinite, sharded by rank).
        seed: makes shuffling and augmentation reproducible (workers get seeds derived from
            ``(seed, rank, worker_id)``); ``None`` draws them at random.

    Returns:
        iterable yielding ``list[dict]`` of length ``total_batch_size // world_size``, forever.
    """
    world_size = get_world_size()
    if total_batch_size <= 0 or total_batch_size % world_size != 0:
        raise ValueError(
            f"total_batch_size={total_batch_size} must be a positive multiple of world size {world_size}"
        )
    data = _as_dataset(dataset, filter_empty=True)
    if sampler is None:
        sampler = TrainingSampler(len(data), seed=seed)
    loader = DataLoader(
        _SampledMapDataset(data, mapper or _identity, sampler, seed),
        batch_size=None,  # single items; _Batches groups them in this process
        num_workers=num_workers,
        collate_fn=_identity,
        worker_init_fn=functools.partial(_seed_worker, seed=seed, rank=get_rank()),
    )
    return _Batches(loader, total_batch_size // world_size, aspect_ratio_grouping)


def build_detection_test_loader(
    *, dataset: Any, mapper: Mapper | None, batch_size: int = 1, num_workers: int = 0
) -> DataLoader:
    """A loader over the whole dataset, once, in dataset order (each rank reads its contiguous shard).

    Args:
        dataset: dataset name(s) (loaded with ``filter_empty=False``: every image is evaluated),
            a list of dataset dicts, or any sequence.
        mapper: dataset dict -> model input; ``None`` keeps the dicts.
        batch_size: images per batch (per rank).

    Returns:
        a DataLoader yielding ``list[dict]``.
    """
    data = _as_dataset(dataset, filter_empty=False)
    return DataLoader(
        _MapDataset(data, mapper or _identity),
        batch_size=batch_size,
        sampler=InferenceSampler(len(data)),
        num_workers=num_workers,
        collate_fn=trivial_batch_collator,
        drop_last=False,
    )
