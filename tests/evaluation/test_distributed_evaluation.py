"""Evaluators in a 2-process gloo group give the single-process numbers."""

from __future__ import annotations

import json
import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from _synthetic_detections import (
    CLASSES,
    DATASET_IDS,
    LookupModel,
    as_loader,
    make_dataset_dicts,
    noisy_predictions,
)

from rcnnzoo.data import DatasetCatalog, MetadataCatalog
from rcnnzoo.evaluation import COCOEvaluator, PascalVOCDetectionEvaluator, inference_on_dataset

NAME = "dist_eval_synthetic"


def _register() -> list[dict]:
    dicts = make_dataset_dicts(num_images=9, seed=21, with_crowd=False)
    DatasetCatalog.register(NAME, lambda: dicts)
    MetadataCatalog.get(NAME).set(
        thing_classes=CLASSES, thing_dataset_id_to_contiguous_id={d: k for k, d in enumerate(DATASET_IDS)}
    )
    return dicts


def _evaluate(dicts: list[dict], shard: list[dict], output_dir: str | None) -> dict:
    model = LookupModel(noisy_predictions(dicts, seed=22))
    evaluators = [
        COCOEvaluator(NAME, output_dir=output_dir),
        PascalVOCDetectionEvaluator(NAME, use_07_metric=False),
    ]
    coco = inference_on_dataset(model, as_loader(shard), evaluators[0], progress=False)
    voc = inference_on_dataset(model, as_loader(shard), evaluators[1], progress=False)
    return {"coco": coco, "voc": voc}


def _worker(rank: int, world_size: int, store_file: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store_file}", rank=rank, world_size=world_size)
    try:
        dicts = _register()
        # Uneven shards, like an inference sampler on 9 images and 2 processes.
        results = _evaluate(dicts, dicts[rank::world_size], out_dir)
        with open(os.path.join(out_dir, f"results_rank{rank}.json"), "w") as f:
            json.dump(results, f)
    finally:
        dist.destroy_process_group()


@pytest.fixture
def single_process_results():
    dicts = _register()
    try:
        yield _evaluate(dicts, dicts, None)
    finally:
        DatasetCatalog.remove(NAME)
        MetadataCatalog.remove(NAME)


def test_two_processes_match_one(tmp_path, single_process_results):
    mp.spawn(_worker, args=(2, str(tmp_path / "store"), str(tmp_path)), nprocs=2, join=True)
    rank0 = json.loads((tmp_path / "results_rank0.json").read_text())
    rank1 = json.loads((tmp_path / "results_rank1.json").read_text())
    assert rank1 == {"coco": {}, "voc": {}}  # results live on the main process only
    for kind in ("coco", "voc"):
        expected = single_process_results[kind]["bbox"]
        got = rank0[kind]["bbox"]
        assert got.keys() == expected.keys()
        for metric, value in expected.items():
            assert got[metric] == pytest.approx(value, abs=1e-12, nan_ok=True), (kind, metric)
    # The results file holds every image's detections, from both processes.
    saved = json.loads((tmp_path / "coco_instances_results.json").read_text())
    assert {r["image_id"] for r in saved} == {100 + i for i in range(9)} - _images_without_detections()


def _images_without_detections() -> set:
    dicts = make_dataset_dicts(num_images=9, seed=21, with_crowd=False)
    return {i for i, inst in noisy_predictions(dicts, seed=22).items() if len(inst) == 0}
