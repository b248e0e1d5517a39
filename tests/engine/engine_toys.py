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
