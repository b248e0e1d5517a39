"""How evaluators reach the dataset catalogs (ground truth, class names, category ids)."""

from __future__ import annotations

from typing import Any

__all__ = ["catalogs", "dataset_metadata"]


def catalogs() -> tuple[Any, Any]:
    """``(DatasetCatalog, MetadataCatalog)``.

    Imported on use: rcnnzoo.data pulls in far more (transforms, loaders, built-in dataset
    registration) than evaluation needs, and this keeps ``import rcnnzoo.evaluation`` (done by
    the registry lookup) free of import cycles.
    """
    from rcnnzoo.data import DatasetCatalog, MetadataCatalog

    return DatasetCatalog, MetadataCatalog


def dataset_metadata(dataset_name: str) -> Any:
    """The dataset's metadata, with ``thing_classes`` guaranteed.

    Some loaders (COCO json) set ``thing_classes`` only when the dataset is first loaded; in that
    case the dataset is loaded here.

    Raises:
        ValueError: if the metadata still has no ``thing_classes`` after loading.
    """
    dataset_catalog, metadata_catalog = catalogs()
    metadata = metadata_catalog.get(dataset_name)
    if getattr(metadata, "thing_classes", None) is None:
        dataset_catalog.get(dataset_name)
        if getattr(metadata, "thing_classes", None) is None:
            raise ValueError(f"Metadata of dataset {dataset_name!r} has no thing_classes (class names)")
    return metadata
