"""Fixtures: register tiny datasets in the catalogs for the length of one test."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest

from rcnnzoo.data import DatasetCatalog, MetadataCatalog


@pytest.fixture
def register_dataset() -> Callable[..., str]:
    """``register_dataset(dicts, **metadata) -> name``: a fresh dataset, removed after the test."""
    names: list[str] = []

    def register(dicts: list[dict], **metadata) -> str:
        name = f"test_eval_{uuid.uuid4().hex[:8]}"
        DatasetCatalog.register(name, lambda: [dict(d) for d in dicts])
        MetadataCatalog.get(name).set(**metadata)
        names.append(name)
        return name

    yield register
    for name in names:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
