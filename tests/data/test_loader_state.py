"""Resumable training data: sampler start positions, loader state, RNG isolation of loading."""

from __future__ import annotations

import itertools
import random

import numpy as np
import pytest
import torch

from rcnnzoo.data import TrainingSampler, build_detection_train_loader


def _dicts(n: int = 11) -> list[dict]:
    # wide and tall images, so aspect-ratio grouping leaves items waiting in a bucket
    return [{"image_id": i, "height": 10 if i % 3 else 20, "width": 20 if i % 3 else 10} for i in range(n)]


class _RandomMapper:
    """Draws from all three global RNGs, as augmentations may."""

    def __call__(self, d: dict) -> dict:
        return {
            **d,
            "aug": (
                round(random.random(), 6),
                round(float(np.random.rand()), 6),
                round(torch.rand(()).item(), 6),
            ),
        }


def _loader(seed: int | None = 5, num_workers: int = 0):
    return build_detection_train_loader(
        dataset=_dicts(), mapper=_RandomMapper(), total_batch_size=3, num_workers=num_workers, seed=seed
    )


def _signature(batches) -> list[list[tuple]]:
    return [[(d["image_id"], d["aug"]) for d in b] for b in batches]


@pytest.mark.parametrize("start", [0, 1, 7, 23, 40])
@pytest.mark.parametrize("rank, world_size", [(0, 1), (1, 2), (2, 3)])
def test_sampler_indices_start_anywhere_in_the_stream(monkeypatch, start, rank, world_size) -> None:
    monkeypatch.setattr("rcnnzoo.data.samplers.get_rank", lambda: rank)
    monkeypatch.setattr("rcnnzoo.data.samplers.get_world_size", lambda: world_size)
    sampler = TrainingSampler(7, seed=3)
    full = list(itertools.islice(iter(sampler), 60))
    assert list(itertools.islice(sampler.indices(start), 60 - start)) == full[start:]


def test_sampler_state_restores_a_drawn_seed() -> None:
    drawn = TrainingSampler(9, seed=None)
    other = TrainingSampler(9, seed=drawn.seed + 1)
    other.load_state_dict(drawn.state_dict())
    assert other.seed == drawn.seed
    assert list(itertools.islice(iter(other), 30)) == list(itertools.islice(iter(drawn), 30))


@pytest.mark.parametrize("num_workers", [0, 2])
def test_loader_resumes_exactly_from_its_state(num_workers) -> None:
    np.random.seed(0)  # the loader draws its seed (seed=None) from the global NumPy RNG
    reference = _signature(itertools.islice(_loader(seed=None), 10))
    np.random.seed(0)
    first = _loader(seed=None, num_workers=num_workers)
    it = iter(first)
    head = _signature([next(it) for _ in range(4)])
    state = first.state_dict()
    assert state["pending"], "the test wants items waiting in a bucket at the checkpoint"

    np.random.seed(1)  # another drawn seed: the state must override it
    resumed = _loader(seed=None, num_workers=num_workers)
    resumed.load_state_dict(state)
    tail = _signature(itertools.islice(resumed, 6))
    assert head + tail == reference


def test_batches_do_not_depend_on_the_number_of_workers() -> None:
    assert _signature(itertools.islice(_loader(num_workers=2), 5)) == _signature(
        itertools.islice(_loader(num_workers=0), 5)
    )


def test_loading_in_the_main_process_leaves_the_global_rng_alone() -> None:
    loader = _loader()
    torch.manual_seed(0)
    random.seed(0)
    np.random.seed(0)
    expected = (random.random(), np.random.rand(), torch.rand(()).item())
    torch.manual_seed(0)
    random.seed(0)
    np.random.seed(0)
    list(itertools.islice(loader, 3))
    assert (random.random(), np.random.rand(), torch.rand(()).item()) == expected


def test_loader_state_from_another_world_size_keeps_the_share_of_data(caplog) -> None:
    loader = _loader()
    state = {**loader.state_dict(), "position": 10, "pending": [8], "world_size": 2}
    loader.load_state_dict(state)
    assert "saved with 2 processes" in caplog.text
    assert loader.state_dict()["position"] == 20 and loader.state_dict()["pending"] == []
