"""Tiny models, loaders and a fake lazy-config layer for the engine tests (milliseconds each)."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from omegaconf import DictConfig, ListConfig, OmegaConf
from torch import nn

TRUE_W = torch.tensor([[1.5], [-2.0], [0.5], [3.0]])


class ToyRegressor(nn.Module):
    """Linear regression behind the detectron2 calling convention.

    Training: ``model(list[dict(x=Tensor[4], y=Tensor[1])])`` -> ``{"loss_mse", "loss_l1"}``.
    Eval: a list of ``{"instances": Tensor[1]}`` (the prediction stands in for Instances).
    """

    def __init__(self, bad_loss: float | None = None) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 1)
        self.bad_loss = bad_loss  # makes "loss_bad" NaN/Inf to test the guard

    def forward(self, batched_inputs: list[dict[str, torch.Tensor]]) -> Any:
        x = torch.stack([d["x"] for d in batched_inputs])
        pred = self.linear(x)
        if not self.training:
            return [{"instances": p} for p in pred]
        y = torch.stack([d["y"] for d in batched_inputs])
        losses = {"loss_mse": ((pred - y) ** 2).mean(), "loss_l1": (pred - y).abs().mean() * 0.1}
        if self.bad_loss is not None:
            losses["loss_bad"] = pred.sum() * 0 + self.bad_loss
        return losses


def _sample(generator: torch.Generator) -> dict[str, torch.Tensor]:
    x = torch.randn(4, generator=generator)
    return {"x": x, "y": x @ TRUE_W}


def toy_loader(batch_size: int = 8, seed: int = 0) -> Iterator[list[dict[str, torch.Tensor]]]:
    """An infinite loader of ``list[dict]`` batches."""
    g = torch.Generator().manual_seed(seed)
    while True:
        yield [_sample(g) for _ in range(batch_size)]


def toy_test_loader(num_batches: int = 3, batch_size: int = 4) -> list[list[dict[str, torch.Tensor]]]:
    g = torch.Generator().manual_seed(123)
    return [[_sample(g) for _ in range(batch_size)] for _ in range(num_batches)]


class ToyEvaluator:
    """Mean absolute error of the predictions, reported as ``{"toy": {"MAE": ...}}``."""

    built: list[ToyEvaluator] = []  # every instance, so tests can see how it was configured

    def __init__(self, output_dir: str | None = None) -> None:
        self.output_dir = output_dir
        self.errors: list[float] = []
        ToyEvaluator.built.append(self)

    def reset(self) -> None:
        self.errors = []

    def process(self, inputs: list[dict], outputs: list[dict]) -> None:
        for i, o in zip(inputs, outputs):
            self.errors.append(float((o["instances"].detach() - i["y"]).abs().mean()))

    def evaluate(self) -> dict[str, dict[str, float]]:
        return {"toy": {"MAE": sum(self.errors) / len(self.errors)}}


class ToyEvaluatorWithoutOutputDir(ToyEvaluator):
    """Like PASCAL VOC's evaluator: no output_dir argument."""

    def __init__(self) -> None:
        super().__init__()


# ------------------------------------------------------------------ a fake lazy-config layer
# The real rcnnzoo.config / rcnnzoo.evaluation are written by others; these stand-ins follow
# the same contracts (LazyCall nodes with "_target_", instantiate, inference_on_dataset).


def L(target: Any, **kwargs: Any) -> dict[str, Any]:  # noqa: N802 (mirrors LazyCall's usual alias)
    return {"_target_": target, **kwargs}


def make_cfg(tree: dict[str, Any]) -> DictConfig:
    return OmegaConf.create(tree, flags={"allow_objects": True})


def fake_instantiate(node: Any, **overrides: Any) -> Any:
    if isinstance(node, (DictConfig, dict)) and "_target_" in node:
        kwargs = {k: fake_instantiate(v) for k, v in node.items() if k != "_target_"}
        return node["_target_"](**{**kwargs, **overrides})
    if isinstance(node, (ListConfig, list)):
        return [fake_instantiate(v) for v in node]
    return node


def fake_build_part(node: Any, **inferred: Any) -> Any:
    """Like rcnnzoo.config.build_part: pass the inferred values the target accepts and the node lacks."""
    accepted = inspect.signature(node["_target_"]).parameters
    return fake_instantiate(node, **{k: v for k, v in inferred.items() if k in accepted and k not in node})


def fake_apply_augmentations(augmentations: list[Any], image: Any) -> tuple[Any, list[Any]]:
    """Like rcnnzoo.data.transforms.apply_augmentations (detectron2-style augmentations)."""
    transforms = []
    for aug in augmentations:
        transforms.append(aug.get_transform(image))
        image = transforms[-1].apply_image(image)
    return image, transforms


def fake_inference_on_dataset(model: nn.Module, data_loader: Any, evaluator: ToyEvaluator) -> dict[str, Any]:
    """Like rcnnzoo.evaluation.inference_on_dataset: eval mode and no autograd, mode restored."""
    was_training = model.training
    model.eval()
    evaluator.reset()
    with torch.no_grad():
        for inputs in data_loader:
            evaluator.process(inputs, model(inputs))
    model.train(was_training)
    return evaluator.evaluate()


@contextmanager
def captured_log(name: str) -> Iterator[list[str]]:
    """Collect the messages logged to logger ``name`` (independent of propagation settings)."""
    messages: list[str] = []

    class _Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            messages.append(record.getMessage())

    handler = _Collect(level=logging.DEBUG)
    log = logging.getLogger(name)
    old_level = log.level
    log.addHandler(handler)
    log.setLevel(logging.DEBUG)
    try:
        yield messages
    finally:
        log.removeHandler(handler)
        log.setLevel(old_level)


# ------------------------------------------------------------------ toys with randomness everywhere
# For exact-resume and distributed tests: augmentations drawing from `random`, NumPy and torch, and
# a model drawing from torch's RNG (dropout, RoI-sampling-like subsampling).


class SimulatedCrash(RuntimeError):
    """Raised by RandomizedRegressor to stop a training run at a chosen iteration."""


def toy_dataset_dicts(num: int = 10, seed: int = 0) -> list[dict[str, Any]]:
    """Dataset dicts with ``x``/``y`` tensors and a size; wide and tall ones, for aspect-ratio grouping."""
    g = torch.Generator().manual_seed(seed)
    dicts = []
    for i in range(num):
        sample = _sample(g)
        wide = i % 3 != 0
        dicts.append({**sample, "image_id": i, "height": 10 if wide else 20, "width": 20 if wide else 10})
    return dicts


class ToyAugMapper:
    """Random "augmentations" of a toy dict, drawing from ``random``, ``np.random`` and torch's RNG."""

    def __call__(self, d: dict[str, Any]) -> dict[str, Any]:
        import random

        import numpy as np

        scale = 1.0 + 0.1 * float(np.random.uniform(-1, 1))
        sign = -1.0 if random.random() < 0.5 else 1.0
        x = d["x"] * scale * sign + 0.01 * torch.randn(4)
        return {**d, "x": x, "y": x @ TRUE_W}


class RandomizedRegressor(nn.Module):
    """:class:`ToyRegressor` with dropout and a random subset of each batch in the loss.

    Records the ``image_id`` of every training input in ``seen_ids``. With ``crash_at_call=k``, the
    k-th training forward (counting from 1) raises :class:`SimulatedCrash`.
    """

    def __init__(self, width: int = 16, crash_at_call: int | None = None) -> None:
        super().__init__()
        self.hidden = nn.Linear(4, width)
        self.dropout = nn.Dropout(0.2)
        self.out = nn.Linear(width, 1)
        self.crash_at_call = crash_at_call
        self.calls = 0
        self.seen_ids: list[int] = []

    def forward(self, batched_inputs: list[dict[str, Any]]) -> Any:
        x = torch.stack([d["x"] for d in batched_inputs])
        if not self.training:
            return [{"instances": p} for p in self.out(torch.relu(self.hidden(x)))]
        self.calls += 1
        if self.crash_at_call is not None and self.calls >= self.crash_at_call:
            raise SimulatedCrash(f"simulated crash at training call {self.calls}")
        self.seen_ids.extend(int(d["image_id"]) for d in batched_inputs)
        pred = self.out(self.dropout(torch.relu(self.hidden(x))))
        y = torch.stack([d["y"] for d in batched_inputs])
        keep = torch.randperm(len(batched_inputs))[: max(1, len(batched_inputs) - 1)]
        return {"loss_mse": ((pred[keep] - y[keep]) ** 2).mean(), "loss_l1": (pred - y).abs().mean() * 0.1}


class GatheringToyEvaluator(ToyEvaluator):
    """:class:`ToyEvaluator` for distributed inference: rank 0 gathers every rank's errors.

    Reports ``{"toy": {"MAE": ..., "count": images evaluated}}`` on rank 0 and ``None`` elsewhere,
    like COCOEvaluator. Errors are summed in rank order; with contiguous shards that is dataset order.
    """

    def evaluate(self) -> dict[str, dict[str, float]] | None:
        from rcnnzoo.utils import comm

        parts = comm.gather(self.errors)
        if not comm.is_main_process():
            return None
        errors = [e for part in parts for e in part]
        return {"toy": {"MAE": sum(errors) / len(errors), "count": float(len(errors))}}


# ------------------------------------------------------------------ a toy detector for COCO AP

TOY_COCO_NAME = "toy_coco_engine_tests"


def toy_coco_dicts(num_images: int = 8) -> list[dict[str, Any]]:
    """Detection dataset dicts (boxes only, no image files): 1-3 objects of 2 classes per image."""
    from rcnnzoo.structures import BoxMode

    g = torch.Generator().manual_seed(7)
    dicts = []
    for i in range(num_images):
        annotations = []
        for _ in range(1 + i % 3):
            x, y = torch.randint(0, 60, (2,), generator=g).tolist()
            w, h = torch.randint(12, 30, (2,), generator=g).tolist()
            category = int(torch.randint(0, 2, (), generator=g))
            annotations.append(
                {"bbox": [x, y, w, h], "bbox_mode": BoxMode.XYWH_ABS, "category_id": category, "iscrowd": 0}
            )
        dicts.append(
            {"image_id": i, "file_name": f"{i}.jpg", "height": 96, "width": 96, "annotations": annotations}
        )
    return dicts


def register_toy_coco() -> None:
    """Register :func:`toy_coco_dicts` as ``TOY_COCO_NAME`` (once per process)."""
    from rcnnzoo.data import DatasetCatalog, MetadataCatalog

    if TOY_COCO_NAME not in DatasetCatalog:
        DatasetCatalog.register(TOY_COCO_NAME, toy_coco_dicts)
        MetadataCatalog.get(TOY_COCO_NAME).set(thing_classes=["square", "circle"])


class ToyDetector(nn.Module):
    """Imperfect detections derived from the ground truth of dataset dicts, for a mid-range COCO AP.

    Boxes are shifted by ``shift * ((image_id + k) % 3)`` pixels, some classes are wrong, and each
    image gets a false positive; scores decrease with the object index. Eval mode only.
    """

    def __init__(self) -> None:
        super().__init__()
        self.shift = nn.Parameter(torch.tensor(4.0))

    def forward(self, batched_inputs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        from rcnnzoo.structures import Boxes, Instances

        outputs = []
        for d in batched_inputs:
            i = int(d["image_id"])
            boxes, scores, classes = [], [], []
            for k, a in enumerate(d["annotations"]):
                x, y, w, h = a["bbox"]
                dx = float(self.shift) * ((i + k) % 3)
                boxes.append([x + dx, y, x + w + dx, y + h])
                scores.append(0.9 - 0.1 * k - 0.03 * (i % 4))
                classes.append(a["category_id"] if (i + k) % 5 else 1 - a["category_id"])
            boxes.append([0.0, 0.0, 20.0 + i, 20.0])  # a false positive
            scores.append(0.5 + 0.05 * (i % 3))
            classes.append(i % 2)
            instances = Instances((d["height"], d["width"]))
            instances.pred_boxes = Boxes(torch.tensor(boxes))
            instances.scores = torch.tensor(scores)
            instances.pred_classes = torch.tensor(classes, dtype=torch.int64)
            outputs.append({"instances": instances})
        return outputs
