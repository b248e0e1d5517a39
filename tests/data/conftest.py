"""Fixtures for the data tests: a datasets root under tmp, catalog cleanup, a tiny shapes split."""

from __future__ import annotations

import os

import pytest

from rcnnzoo.data import DatasetCatalog, MetadataCatalog
from rcnnzoo.data.datasets.shapes import prepare_shapes


@pytest.fixture
def datasets_root(tmp_path, monkeypatch):
    """An empty datasets root, set as $RCNNZOO_DATASETS for the test."""
    root = tmp_path / "datasets"
    root.mkdir()
    monkeypatch.setenv("RCNNZOO_DATASETS", str(root))
    return root


@pytest.fixture
def catalog_names():
    """Collects dataset names a test registers and removes them (and their metadata) afterwards."""
    names: list[str] = []
    yield names
    for name in names:
        if name in DatasetCatalog:
            DatasetCatalog.remove(name)
        if name in MetadataCatalog:
            MetadataCatalog.remove(name)


@pytest.fixture(scope="session")
def small_shapes(tmp_path_factory):
    """A 20-image shapes split generated once per session: (json_file, image_root)."""
    root = tmp_path_factory.mktemp("shapes_root")
    json_file, image_root = prepare_shapes("train", num_images=20, seed=123, root=root)
    assert os.path.isfile(json_file)
    return json_file, image_root
