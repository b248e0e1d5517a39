"""Fixtures of the engine tests."""

from __future__ import annotations

import logging
import sys
import types
from collections.abc import Iterator

import pytest
from engine_toys import (
    ToyEvaluator,
    fake_apply_augmentations,
    fake_build_part,
    fake_inference_on_dataset,
    fake_instantiate,
)

import rcnnzoo.config
import rcnnzoo.evaluation


class FakeLazyConfig:
    """Stands in for rcnnzoo.config.LazyConfig: records what save() was asked to write."""

    saved: list[str] = []

    @staticmethod
    def save(cfg: object, path: str) -> None:
        FakeLazyConfig.saved.append(path)
        with open(path, "w", encoding="utf-8") as f:
            f.write("# saved by FakeLazyConfig\n")


@pytest.fixture
def fake_lazy(monkeypatch: pytest.MonkeyPatch) -> types.SimpleNamespace:
    """Route the engine's calls into rcnnzoo.config / .data.transforms / .evaluation to toy stand-ins."""
    FakeLazyConfig.saved = []
    ToyEvaluator.built = []
    transforms = types.ModuleType("rcnnzoo.data.transforms")
    transforms.apply_augmentations = fake_apply_augmentations  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "rcnnzoo.data.transforms", transforms)
    monkeypatch.setattr(rcnnzoo.config, "instantiate", fake_instantiate, raising=False)
    monkeypatch.setattr(rcnnzoo.config, "build_part", fake_build_part, raising=False)
    monkeypatch.setattr(rcnnzoo.config, "LazyConfig", FakeLazyConfig, raising=False)
    monkeypatch.setattr(rcnnzoo.evaluation, "inference_on_dataset", fake_inference_on_dataset, raising=False)
    return types.SimpleNamespace(lazy_config=FakeLazyConfig)


@pytest.fixture
def restore_loggers() -> Iterator[None]:
    """Undo setup_logger's handlers and propagate=False, so other tests' log capture keeps working."""
    names = ("rcnnzoo", "fvcore")
    before = {n: (list(logging.getLogger(n).handlers), logging.getLogger(n).propagate) for n in names}
    yield
    for n, (handlers, propagate) in before.items():
        log = logging.getLogger(n)
        for h in log.handlers:
            if h not in handlers:
                log.removeHandler(h)
                h.close()
        log.propagate = propagate
