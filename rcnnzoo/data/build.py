"""Data loaders: dataset dicts + mapper + sampler -> batches of model inputs (``list[dict]``)."""

from __future__ import annotations

import contextlib
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

from rcnnzoo.utils.comm import get_rank, get_world_size, shared_random_seed

from .catalog import DatasetCatalog, MetadataCatalog
from .checks import BAD_BOX_MODES, check_category_ids, handle_bad_boxes
from .proposals import attach_proposals
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


def get_detection_dataset_dicts(
    names: str | Sequence[str],
    filter_empty: bool = False,
    bad_boxes: str = "error",
    proposal_files: str | Sequence[str] | None = None,
) -> list[dict]:
    """Load and concatenate registered datasets.

    Args:
        names: one dataset name or several.
        filter_empty: drop images with no (non-crowd) annotations, after ``bad_boxes`` is applied
            (never for evaluation). Off by default: images without objects train correctly (they
            teach the background); either way the number of such images is logged.
        bad_boxes: what to do with boxes that have width or height <= 0 (or are not finite),
            extend beyond their image by more than 1 px, or look like the wrong layout (XYXY in
            an XYWH dataset or the reverse): ``"error"`` raises, ``"drop"`` removes those
            annotations, ``"clip"`` clips the boxes outside the image to it and removes the others.
            ``"drop"`` and ``"clip"`` log how many per kind. See :mod:`rcnnzoo.data.checks`.
        proposal_files: one proposal file per name (see :mod:`rcnnzoo.data.proposals`, made by
            ``tools/precompute_proposals.py``), attached before ``filter_empty``: each dict gets
            ``proposal_boxes``, ``proposal_objectness_logits`` and ``proposal_bbox_mode``, which
            the :class:`DatasetMapper` turns into the input's ``"proposals"``.

    Returns:
        the dataset dicts, in the order of ``names`` and of each dataset.

    Raises:
        KeyError: an unknown name (the message suggests the closest registered ones).
        ValueError: an empty dataset; a ``category_id`` outside ``0..len(thing_classes) - 1``
            (listed by image file and annotation id); no image left after ``filter_empty``; with
            ``bad_boxes="error"``, bad boxes (listed by image file and annotation id); an unknown
            ``bad_boxes`` value; not one proposal file per name, or a proposal file without some
            of its dataset's images (it names the file and the first missing image ids).
    """
    names = [names] if isinstance(names, str) else list(names)
    if not names:
        raise ValueError("get_detection_dataset_dicts needs at least one dataset name")
    if bad_boxes not in BAD_BOX_MODES:
        raise ValueError(f"bad_boxes={bad_boxes!r} is not one of {', '.join(map(repr, BAD_BOX_MODES))}")
    if isinstance(proposal_files, str):
        proposal_files = [proposal_files]
    if proposal_files is not None and len(proposal_files) != len(names):
        raise ValueError(
            f"proposal_files needs one file per dataset: {len(proposal_files)} files for datasets {names}"
        )
    dicts: list[dict] = []
    for i, name in enumerate(names):
        loaded = DatasetCatalog.get(name)
        if not loaded:
            raise ValueError(f"Dataset {name!r} is empty")
        meta = MetadataCatalog.get(name)
        json_file = meta.get("json_file")
        check_category_ids(loaded, meta.get("thing_classes"), name=name, json_file=json_file)
        loaded = handle_bad_boxes(loaded, bad_boxes, name=name, json_file=json_file)
        if proposal_files is not None:
            loaded = attach_proposals(loaded, proposal_files[i], dataset_name=name)
            logger.info("Attached %s to the %d images of %s", proposal_files[i], len(loaded), name)
        dicts.extend(loaded)
    has_annotations = any("annotations" in d for d in dicts)
    if filter_empty and has_annotations:
        before = len(dicts)
        dicts = [d for d in dicts if _has_instances(d)]
        logger.info(
            "Removed %d images with no usable annotations from %s; %d images left [filter_empty=True].",
            before - len(dicts),
            names,
            len(dicts),
        )
        if not dicts:
            raise ValueError(f"No images with annotations left in {names} after filter_empty")
    elif has_annotations:
        empty = sum(not _has_instances(d) for d in dicts)
        logger.info(
            "Keeping all %d images of %s, %d without annotations [filter_empty=False].",
            len(dicts),
            names,
            empty,
        )
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


def _sampler_indices(sampler: Sampler, start: int) -> Iterator[int]:
    """The sampler's stream from position ``start`` on; samplers with ``indices(start)`` skip cheaply."""
    if hasattr(sampler, "indices"):
        return iter(sampler.indices(start))
    return itertools.islice(iter(sampler), start, None)


def _derived_seed(*entropy: int) -> int:
    return int(np.random.SeedSequence(list(entropy)).generate_state(1)[0])


def _seed_globals(seed: int) -> None:
    """Seed the global RNGs augmentations draw from: ``random``, ``np.random`` and torch's CPU generator."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.default_generator.manual_seed(seed)  # not torch.manual_seed: that would reseed CUDA too


@contextlib.contextmanager
def _global_rng_preserved() -> Iterator[None]:
    """Restore the states of ``random``, ``np.random`` and torch's CPU generator on exit."""
    states = random.getstate(), np.random.get_state(), torch.get_rng_state()
    try:
        yield
    finally:
        random.setstate(states[0])
        np.random.set_state(states[1])
        torch.set_rng_state(states[2])


class _SampledMapDataset(IterableDataset):
    """``(position, mapped item)`` along the sampler's stream, starting at position ``start``.

    ``position`` counts this rank's stream (0, 1, 2, ...). Each item is mapped with the global RNGs
    seeded from ``(seed, rank, position)``, so its augmentation depends on nothing else: not on the
    number of loader workers, on what was loaded before, or on whether training was resumed. (In the
    main process, :class:`_Batches` restores the training's RNG states around the loading.)

    Worker ``k`` of ``n`` maps every ``n``-th position starting at ``start + k``; the DataLoader
    collects the workers round-robin, so positions arrive in order. To keep that order, an item is
    never left out: ``(position, None)`` stands for an item the mapper dropped (returned ``None``)
    and for a position below ``skip_below`` that is not in ``remap`` (consumed before a resume).
    """

    def __init__(self, dataset: Sequence, mapper: Mapper, sampler: Sampler, seed: int, rank: int):
        self.dataset, self.mapper, self.sampler, self.seed, self.rank = dataset, mapper, sampler, seed, rank
        self.start = 0
        self.skip_below = 0
        self.remap: frozenset[int] = frozenset()

    def __iter__(self) -> Iterator[tuple[int, Any]]:
        stream: Iterable[tuple[int, int]] = zip(
            itertools.count(self.start), _sampler_indices(self.sampler, self.start)
        )
        worker = get_worker_info()
        if worker is not None:
            stream = itertools.islice(stream, worker.id, None, worker.num_workers)
        for position, index in stream:
            if position < self.skip_below and position not in self.remap:
                yield position, None
                continue
            _seed_globals(_derived_seed(self.seed, self.rank, position, 1))
            yield position, self.mapper(self.dataset[index])


def _worker_seed(seed: int, rank: int, worker_id: int) -> int:
    return _derived_seed(seed, rank, worker_id)


def _seed_worker(worker_id: int, seed: int, rank: int) -> None:
    """worker_init_fn: seed numpy, random and torch in each worker, differently per worker and rank.

    Items are reseeded one by one (see :class:`_SampledMapDataset`); this covers any other
    randomness in the worker.
    """
    s = _worker_seed(seed, rank, worker_id)
    np.random.seed(s % 2**32)
    random.seed(s)
    torch.manual_seed(s)


def _image_is_wide(item: dict) -> bool:
    """Orientation of an item: from its (augmented) image if mapped, else from its recorded size."""
    image = item.get("image")
    if image is not None:
        h, w = image.shape[-2:]
    else:
        h, w = item["height"], item["width"]
    return w > h


class _Batches:
    """Infinite iterable of ``list[dict]`` batches from a loader of single items; resumable.

    With ``aspect_ratio_grouping``, wide (w > h) and tall (w <= h) images wait in separate
    buckets, so a batch pads little when the model stacks it.

    Loading in this process (``num_workers=0``) reseeds the global RNGs item by item; their states
    are saved before and restored after assembling each batch, so the training's own random stream
    (dropout, RoI sampling) is the same as with loader workers.

    :meth:`state_dict` describes what the batches yielded so far consumed: the next stream
    position, the positions still waiting in a bucket, the seeds. After :meth:`load_state_dict`,
    the next ``iter()`` continues exactly where the saved one stopped (the waiting items are mapped
    again, to the same result), so a resumed training sees the batches of an uninterrupted one.
    """

    def __init__(
        self,
        loader: DataLoader,
        dataset: _SampledMapDataset,
        batch_size: int,
        aspect_ratio_grouping: bool,
        world_size: int,
    ):
        self.loader = loader
        self.dataset = dataset
        self.batch_size = batch_size
        self.aspect_ratio_grouping = aspect_ratio_grouping
        self.world_size = world_size
        self._position = 0  # next stream position not yet taken from the loader
        self._pending: list[int] = []  # positions waiting in the buckets of the next iter()
        self._buckets: dict[bool, list[tuple[int, Any]]] | None = None  # those of the live iterator

    def __iter__(self) -> Iterator[list[dict]]:
        start, pending = self._position, sorted(self._pending)
        self.dataset.start = pending[0] if pending else start
        self.dataset.skip_below = start
        self.dataset.remap = frozenset(pending)
        self._buckets = {True: [], False: []}
        in_this_process = self.loader.num_workers == 0
        items = iter(self.loader)
        while True:
            with _global_rng_preserved() if in_this_process else contextlib.nullcontext():
                batch = self._next_batch(items)
            if batch is None:
                return  # a finite custom sampler ran out
            yield batch

    def _next_batch(self, items: Iterator[tuple[int, Any]]) -> list[dict] | None:
        assert self._buckets is not None
        for position, item in items:
            self._position = max(self._position, position + 1)
            if item is None:
                continue
            bucket = self._buckets[_image_is_wide(item) if self.aspect_ratio_grouping else True]
            bucket.append((position, item))
            if len(bucket) == self.batch_size:
                batch = [it for _, it in bucket]
                bucket.clear()  # before yielding: while the consumer holds the batch, it is consumed
                return batch
        return None

    def state_dict(self) -> dict[str, Any]:
        """Plain ints and lists (safe for ``torch.load(weights_only=True)``)."""
        if self._buckets is not None:
            pending = sorted(p for bucket in self._buckets.values() for p, _ in bucket)
        else:
            pending = sorted(self._pending)
        sampler = self.dataset.sampler
        return {
            "position": self._position,
            "pending": pending,
            "seed": self.dataset.seed,
            "world_size": self.world_size,
            "sampler": sampler.state_dict() if hasattr(sampler, "state_dict") else None,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from ``state`` at the next ``iter()``.

        A state saved with another number of processes continues at the same share of the
        (shared) stream, without the waiting items: the order then differs from an uninterrupted run.
        """
        if self._buckets is not None:
            logger.warning("Loading a data loader state while iterating it: it applies to the next iter()")
        self.dataset.seed = int(state["seed"])
        sampler = self.dataset.sampler
        if state.get("sampler") is not None and hasattr(sampler, "load_state_dict"):
            sampler.load_state_dict(state["sampler"])
        position, pending = int(state["position"]), [int(p) for p in state["pending"]]
        saved_world = int(state.get("world_size", self.world_size))
        if saved_world != self.world_size:
            logger.warning(
                f"The data loader state was saved with {saved_world} processes, now {self.world_size}: "
                "resuming at the same point of the data, but not in the exact order."
            )
            position, pending = position * saved_world // self.world_size, []
        self._position, self._pending, self._buckets = position, pending, None


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
    """An infinite, resumable iterable of training batches.

    Args:
        dataset: dataset name(s) (loaded with ``filter_empty=False``; to filter, pass
            ``get_detection_dataset_dicts(names, filter_empty=True)``), a list of dataset dicts,
            or any sequence.
        mapper: dataset dict -> model input (e.g. :class:`DatasetMapper`); ``None`` keeps the dicts.
        total_batch_size: images per iteration over all ranks; each rank gets
            ``total_batch_size // world_size``.
        num_workers: loader worker processes (0: load in this process).
        aspect_ratio_grouping: batch only images of the same orientation (w > h vs w <= h).
        sampler: index stream; default :class:`TrainingSampler` (shuffled, infinite, sharded by rank).
            A sampler with ``indices(start)`` resumes without replaying the stream.
        seed: makes shuffling and augmentation reproducible: the augmentation of the ``p``-th item of
            a rank is seeded from ``(seed, rank, p)``, whatever ``num_workers``. ``None`` draws one
            seed on rank 0 and shares it.

    Returns:
        iterable yielding ``list[dict]`` of length ``total_batch_size // world_size``, forever. It has
        ``state_dict()``/``load_state_dict()`` (position in the stream, seeds), which the trainer
        saves in checkpoints for an exact ``--resume``.
    """
    world_size = get_world_size()
    if total_batch_size <= 0 or total_batch_size % world_size != 0:
        raise ValueError(
            f"total_batch_size={total_batch_size} must be a positive multiple of world size {world_size}"
        )
    data = _as_dataset(dataset, filter_empty=False)
    seed = int(seed) if seed is not None else shared_random_seed()
    if sampler is None:
        sampler = TrainingSampler(len(data), seed=seed)
    mapped = _SampledMapDataset(data, mapper or _identity, sampler, seed, get_rank())
    loader = DataLoader(
        mapped,
        batch_size=None,  # single items; _Batches groups them in this process
        num_workers=num_workers,
        collate_fn=_identity,
        worker_init_fn=functools.partial(_seed_worker, seed=seed, rank=get_rank()),
        # Its own generator: starting an iterator draws a base seed, which must not come from (and
        # advance) the global torch RNG that the model's training randomness uses.
        generator=torch.Generator().manual_seed(seed),
    )
    return _Batches(loader, mapped, total_batch_size // world_size, aspect_ratio_grouping, world_size)


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
