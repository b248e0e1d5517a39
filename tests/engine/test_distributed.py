"""Two processes with gloo on the CPU: DDP training with a rank-sharded sampler, distributed evaluation.

The processes are started by :func:`rcnnzoo.engine.launch`, run the real ``do_train`` (real config
layer, data loaders, ``inference_on_dataset``), and rank 0 reports back through a file.
"""

from __future__ import annotations

import itertools
import json
import os

import pytest
import torch
from engine_toys import (
    TOY_COCO_NAME,
    GatheringToyEvaluator,
    L,
    RandomizedRegressor,
    ToyAugMapper,
    ToyDetector,
    make_cfg,
    register_toy_coco,
    toy_dataset_dicts,
)
from omegaconf import DictConfig

from rcnnzoo.checkpoint import Checkpointer
from rcnnzoo.data import (
    DatasetCatalog,
    MetadataCatalog,
    TrainingSampler,
    build_detection_test_loader,
    build_detection_train_loader,
)
from rcnnzoo.engine import do_test, do_train, launch, seed_all_rng
from rcnnzoo.evaluation import COCOEvaluator, inference_on_dataset
from rcnnzoo.solver import cosine_schedule, get_default_optimizer_params
from rcnnzoo.utils import comm

MAX_ITER, TOTAL_BATCH, DATA_SEED = 4, 4, 3


def _cfg(output_dir: str, max_iter: int = MAX_ITER) -> DictConfig:
    return make_cfg(
        {
            "optimizer": L(torch.optim.SGD, params=L(get_default_optimizer_params), lr=0.05, momentum=0.9),
            "lr_multiplier": L(cosine_schedule, max_iter=max_iter, warmup_iter=1),
            "dataloader": {
                "train": L(
                    build_detection_train_loader,
                    dataset=L(toy_dataset_dicts, num=10),
                    mapper=L(ToyAugMapper),
                    total_batch_size=TOTAL_BATCH,
                    aspect_ratio_grouping=False,  # batches in stream order, to check the sharding
                    seed=DATA_SEED,
                ),
                "test": L(
                    build_detection_test_loader, dataset=L(toy_dataset_dicts, num=9, seed=1), mapper=None
                ),
                "evaluator": L(GatheringToyEvaluator, output_dir=None),
            },
            "train": {
                "output_dir": output_dir,
                "max_iter": max_iter,
                "init_checkpoint": "",
                "checkpointer": {"period": 2},
                "eval_period": 2,
                "log_period": 1,
                "device": "cpu",
                "best_checkpoint": {"metric": "toy/MAE", "mode": "min"},
            },
        }
    )


def _train_and_evaluate(output_dir: str, max_iter: int = MAX_ITER, resume: bool = False) -> None:
    """Each rank's work (module level, so that spawn can pickle it)."""
    seed_all_rng(comm.get_rank())  # different initial weights per rank: DDP must broadcast rank 0's
    model = RandomizedRegressor()
    results = do_train(_cfg(output_dir, max_iter), model, resume=resume)
    seen = comm.all_gather(model.seen_ids)
    weights = comm.all_gather({k: v.clone() for k, v in model.state_dict().items()})
    all_results = comm.all_gather(results)
    if comm.is_main_process():
        report = {
            "world_size": comm.get_world_size(),
            "seen": seen,
            "weights_equal": all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0]),
            "results": all_results,
        }
        with open(
            os.path.join(output_dir, f"report{'_resumed' if resume else ''}.json"), "w", encoding="utf-8"
        ) as f:
            json.dump(report, f)


def test_two_process_training_and_evaluation_match_one_process(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # only affects this process
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # children: gloo on the CPU
    out = str(tmp_path)
    launch(_train_and_evaluate, num_gpus_per_machine=2, dist_url="auto", args=(out,))
    with open(os.path.join(out, "report.json"), encoding="utf-8") as f:
        report = json.load(f)
    assert report["world_size"] == 2
    assert report["weights_equal"]  # DDP kept the replicas identical

    # The training sampler shards by rank: each rank reads every other index of the shared stream.
    per_rank = MAX_ITER * TOTAL_BATCH // 2
    stream = list(itertools.islice(TrainingSampler(10, seed=DATA_SEED), 2 * per_rank))
    assert report["seen"][0] == stream[0::2] and report["seen"][1] == stream[1::2]
    assert not set(report["seen"][0][:5]) & set(report["seen"][1][:5])  # the first epoch, split

    # Distributed evaluation (each rank a shard, gathered on rank 0) == one process on the same weights.
    rank0, rank1 = report["results"]
    assert rank1 == {}
    model = RandomizedRegressor()
    Checkpointer(model).load(os.path.join(out, "model_final.pth"), [])
    single = do_test(_cfg(str(tmp_path / "single")), model)
    assert single["toy"]["count"] == rank0["toy"]["count"] == 9
    assert single["toy"]["MAE"] == pytest.approx(rank0["toy"]["MAE"], rel=1e-6, abs=0)

    # Only rank 0 wrote files; the checkpoint holds both ranks' RNG and data positions.
    files = sorted(os.listdir(out))
    assert len([f for f in files if f.startswith("events.out")]) == 1
    assert {
        "model_0000001.pth",
        "model_final.pth",
        "model_best.pth",
        "last_checkpoint",
        "metrics.json",
    } <= set(files)
    with open(os.path.join(out, "metrics.json"), encoding="utf-8") as f:
        iterations = [json.loads(line)["iteration"] for line in f]
    assert iterations == sorted(set(iterations))  # one writer: no duplicated lines
    final = torch.load(os.path.join(out, "model_final.pth"), weights_only=True)
    assert final["rng"]["world_size"] == 2 and len(final["data_loader"]["ranks"]) == 2
    assert [s["position"] for s in final["data_loader"]["ranks"]] == [per_rank, per_rank]
    assert not torch.equal(final["rng"]["ranks"][0]["torch"], final["rng"]["ranks"][1]["torch"])

    # Resumed in 2 processes, each rank continues its own shard of the stream where it stopped.
    launch(_train_and_evaluate, num_gpus_per_machine=2, dist_url="auto", args=(out, MAX_ITER + 2, True))
    with open(os.path.join(out, "report_resumed.json"), encoding="utf-8") as f:
        resumed = json.load(f)
    stream = list(itertools.islice(TrainingSampler(10, seed=DATA_SEED), 2 * per_rank + 8))
    assert resumed["seen"][0] == stream[0::2][per_rank:] and resumed["seen"][1] == stream[1::2][per_rank:]
    assert resumed["weights_equal"]
    best = torch.load(os.path.join(out, "model_best.pth"), weights_only=True)
    assert best["best_metric"] == "toy/MAE" and best["best_mode"] == "min"
    assert "optimizer" not in best and "rng" not in best  # saved by rank 0 alone: no collective state


def _coco_ap(output_dir: str) -> dict:
    """COCO box AP of ToyDetector, inference sharded over the ranks (InferenceSampler)."""
    register_toy_coco()
    loader = build_detection_test_loader(dataset=TOY_COCO_NAME, mapper=None, batch_size=2)
    evaluator = COCOEvaluator(TOY_COCO_NAME, output_dir=output_dir if comm.is_main_process() else None)
    return {
        "rank": comm.get_rank(),
        "images": len(loader.sampler),
        **inference_on_dataset(ToyDetector(), loader, evaluator),
    }


def _coco_ap_worker(output_dir: str) -> None:
    results = comm.all_gather(_coco_ap(output_dir))
    if comm.is_main_process():
        with open(os.path.join(output_dir, "coco_report.json"), "w", encoding="utf-8") as f:
            json.dump(results, f)


@pytest.fixture
def toy_coco():
    register_toy_coco()
    yield TOY_COCO_NAME
    DatasetCatalog.remove(TOY_COCO_NAME)
    MetadataCatalog.remove(TOY_COCO_NAME)


def test_distributed_coco_ap_equals_single_process_ap(tmp_path, monkeypatch, toy_coco) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    distributed_dir, single_dir = tmp_path / "distributed", tmp_path / "single"
    distributed_dir.mkdir()
    single_dir.mkdir()
    launch(_coco_ap_worker, num_gpus_per_machine=2, dist_url="auto", args=(str(distributed_dir),))
    with open(distributed_dir / "coco_report.json", encoding="utf-8") as f:
        rank0, rank1 = json.load(f)
    assert rank0["images"] + rank1["images"] == 8 and min(rank0["images"], rank1["images"]) == 4
    assert "bbox" not in rank1  # results on rank 0 only

    single = _coco_ap(str(single_dir))
    assert 0.2 < single["bbox"]["AP"] < 0.9  # a non-trivial score, so the comparison means something
    assert rank0["bbox"].keys() == single["bbox"].keys()
    for metric, value in single["bbox"].items():
        assert rank0["bbox"][metric] == pytest.approx(value, nan_ok=True), metric
    # Only rank 0 wrote its detections file; it holds every image's detections.
    with open(distributed_dir / "coco_instances_results.json", encoding="utf-8") as f:
        assert {d["image_id"] for d in json.load(f)} == set(range(8))
