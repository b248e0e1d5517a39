import itertools

import pytest
import torch.distributed as dist

from rcnnzoo.data import InferenceSampler, TrainingSampler


def _take(sampler, n):
    return list(itertools.islice(iter(sampler), n))


@pytest.fixture
def fake_dist(monkeypatch):
    """Pretend torch.distributed is initialized with the given (rank, world_size)."""

    def set_rank(rank, world_size):
        monkeypatch.setattr(dist, "is_initialized", lambda: True)
        monkeypatch.setattr(dist, "get_rank", lambda *a, **k: rank)
        monkeypatch.setattr(dist, "get_world_size", lambda *a, **k: world_size)

    return set_rank


def test_training_sampler_is_infinite_and_reshuffles_each_epoch():
    stream = _take(TrainingSampler(10, seed=0), 50)
    epochs = [stream[i : i + 10] for i in range(0, 50, 10)]
    assert all(sorted(e) == list(range(10)) for e in epochs)  # each epoch visits every index once
    assert epochs[0] != list(range(10))  # shuffled
    assert len({tuple(e) for e in epochs}) == 5  # a new order every epoch
    assert _take(TrainingSampler(10, seed=0), 50) == stream  # reproducible from the seed
    assert _take(TrainingSampler(10, seed=1), 50) != stream
    assert _take(TrainingSampler(4, shuffle=False), 10) == [0, 1, 2, 3, 0, 1, 2, 3, 0, 1]


def test_training_sampler_shards_by_rank(fake_dist):
    full = _take(TrainingSampler(10, seed=3), 20)
    fake_dist(0, 2)
    rank0 = _take(TrainingSampler(10, seed=3), 10)
    fake_dist(1, 2)
    rank1 = _take(TrainingSampler(10, seed=3), 10)
    assert rank0 == full[0::2] and rank1 == full[1::2]
    assert sorted(rank0[:5] + rank1[:5]) == list(range(10))  # one epoch split without overlap


def test_training_sampler_rejects_empty():
    with pytest.raises(ValueError, match="non-empty"):
        TrainingSampler(0)


@pytest.mark.parametrize("size, world_size", [(10, 3), (2, 4), (7, 1), (0, 2)])
def test_inference_sampler_covers_every_index_once(fake_dist, size, world_size):
    shards = []
    for rank in range(world_size):
        fake_dist(rank, world_size)
        sampler = InferenceSampler(size)
        shards.append(list(sampler))
        assert len(sampler) == len(shards[-1])
    assert list(itertools.chain(*shards)) == list(range(size))  # contiguous, in order, exactly once
    assert max(map(len, shards)) - min(map(len, shards)) <= 1


def test_inference_sampler_shard_sizes():
    assert [list(InferenceSampler.shard(10, r, 3)) for r in range(3)] == [[0, 1, 2, 3], [4, 5, 6], [7, 8, 9]]
