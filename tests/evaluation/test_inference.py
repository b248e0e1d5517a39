"""inference_on_dataset, DatasetEvaluators and the result-formatting helpers."""

from __future__ import annotations

import logging

import pytest
import torch
from torch import nn

from rcnnzoo.evaluation import (
    DatasetEvaluator,
    DatasetEvaluators,
    flatten_results_dict,
    format_results_table,
    inference_context,
    inference_on_dataset,
    print_csv_format,
)


class CountingEvaluator(DatasetEvaluator):
    """Records what it is given; reports the number of images and the sum of outputs."""

    def __init__(self, task: str = "count", result_none: bool = False):
        self.task, self.result_none = task, result_none
        self.resets = 0
        self.seen: list[int] = []
        self.total = 0.0

    def reset(self) -> None:
        self.resets += 1
        self.seen, self.total = [], 0.0

    def process(self, inputs, outputs):
        assert len(inputs) == len(outputs)
        self.seen.extend(x["image_id"] for x in inputs)
        self.total += sum(float(o["value"]) for o in outputs)

    def evaluate(self):
        if self.result_none:
            return None
        return {self.task: {"images": float(len(self.seen)), "total": self.total}}


class DoublingModel(nn.Module):
    """value = 2 * image_id; records the mode and autograd state it was called in."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.tensor(2.0))
        self.modes: list[tuple[bool, bool]] = []

    def forward(self, inputs):
        self.modes.append((self.training, torch.is_grad_enabled()))
        return [{"value": self.weight * x["image_id"]} for x in inputs]


def loader(num_images: int = 10, batch_size: int = 3):
    ids = list(range(num_images))
    return [
        [{"image_id": i, "height": 8, "width": 8} for i in ids[j : j + batch_size]]
        for j in range(0, num_images, batch_size)
    ]


def test_runs_every_batch_in_eval_mode_without_grad_and_restores_mode(caplog):
    model = DoublingModel().train()
    evaluator = CountingEvaluator()
    with caplog.at_level(logging.INFO, logger="rcnnzoo.evaluation"):
        results = inference_on_dataset(model, loader(), evaluator, progress=False)
    assert results == {"count": {"images": 10.0, "total": 2.0 * sum(range(10))}}
    assert evaluator.seen == list(range(10)) and evaluator.resets == 1
    assert model.modes == [(False, False)] * 4
    assert model.training  # restored
    messages = " ".join(r.getMessage() for r in caplog.records)
    assert "Total inference time" in messages and "Per image" in messages


def test_eval_mode_model_stays_in_eval_mode_and_mode_restored_on_error():
    model = DoublingModel().eval()
    inference_on_dataset(model, loader(), None, progress=False)
    assert not model.training

    class Boom(DoublingModel):
        def forward(self, inputs):
            raise RuntimeError("boom")

    broken = Boom().train()
    with pytest.raises(RuntimeError, match="boom"):
        inference_on_dataset(broken, loader(), CountingEvaluator(), progress=False)
    assert broken.training


def test_none_result_list_of_evaluators_and_plain_callables():
    assert (
        inference_on_dataset(DoublingModel(), loader(), CountingEvaluator(result_none=True), progress=False)
        == {}
    )
    assert inference_on_dataset(DoublingModel(), loader(), None, progress=False) == {}

    both = [CountingEvaluator("a"), CountingEvaluator("b")]
    results = inference_on_dataset(
        lambda inputs: [{"value": 1.0} for _ in inputs], loader(4, 2), both, progress=False
    )
    assert results == {"a": {"images": 4.0, "total": 4.0}, "b": {"images": 4.0, "total": 4.0}}


def test_iterable_loader_without_length_and_progress_bar():
    def batches():
        yield from loader(5, 2)

    results = inference_on_dataset(DoublingModel(), batches(), CountingEvaluator(), progress=True)
    assert results["count"]["images"] == 5.0


def test_dataset_evaluators_refuse_duplicate_tasks():
    evaluators = DatasetEvaluators([CountingEvaluator("same"), CountingEvaluator("same")])
    evaluators.reset()
    with pytest.raises(KeyError, match="same"):
        evaluators.evaluate()


def test_inference_context_on_a_module():
    model = nn.Dropout().train()
    with inference_context(model):
        assert not model.training
    assert model.training


def test_flatten_results_dict():
    nested = {"bbox": {"AP": 0.5, "AP-cat": 0.25}, "segm": {"AP": 0.4}, "extra": 3, "deep": {"a": {"b": 1}}}
    assert flatten_results_dict(nested) == {
        "bbox/AP": 0.5,
        "bbox/AP-cat": 0.25,
        "segm/AP": 0.4,
        "extra": 3,
        "deep/a/b": 1,
    }


def test_table_and_csv_format(caplog):
    table = format_results_table({"AP": 0.41234, "AP50": float("nan"), "AP75": 0.5}, columns=2)
    lines = table.splitlines()
    assert lines[0].count("metric") == 2
    assert "0.4123" in table and "nan" in table and "0.5000" in table
    assert len(lines) == 4  # header, rule, two rows of two
    with caplog.at_level(logging.INFO, logger="rcnnzoo.evaluation"):
        print_csv_format({"bbox": {"AP": 0.5, "AP50": 0.75, "AP-cat": 0.1}})
    messages = [r.getMessage() for r in caplog.records]
    assert "copypaste: AP,AP50" in messages and "copypaste: 0.5000,0.7500" in messages
