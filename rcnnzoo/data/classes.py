"""The number of classes, taken from the data instead of restated in a config.

``num_classes`` means foreground classes everywhere in rcnnzoo (background is handled inside the
heads). A config for a user's dataset can write::

    model.roi_heads.num_classes = L(num_classes_of)(names="my_train")

and the count follows the dataset's categories, whatever their ids.
"""

from __future__ import annotations

from collections.abc import Sequence

from .catalog import DatasetCatalog, MetadataCatalog

__all__ = ["num_classes_of", "thing_classes_of"]


def thing_classes_of(names: str | Sequence[str]) -> list[str]:
    """The class names of registered datasets (loading the first one if its metadata is not filled yet).

    Raises:
        ValueError: when the datasets disagree on their classes, or have none.
    """
    names = [names] if isinstance(names, str) else list(names)
    if not names:
        raise ValueError("thing_classes_of needs at least one dataset name")
    found: dict[str, list[str]] = {}
    for name in names:
        classes = MetadataCatalog.get(name).get("thing_classes")
        if classes is None:
            DatasetCatalog.get(name)  # loading a COCO json fills thing_classes
            classes = MetadataCatalog.get(name).get("thing_classes")
        if classes is None:
            raise ValueError(
                f"Dataset {name!r} has no 'thing_classes' in its metadata; set "
                f"MetadataCatalog.get({name!r}).thing_classes or write num_classes in the config"
            )
        found[name] = list(classes)
    first = next(iter(found.values()))
    differing = {n: c for n, c in found.items() if c != first}
    if differing:
        raise ValueError(f"Datasets trained together must have the same classes, got {found}")
    return first


def num_classes_of(names: str | Sequence[str]) -> int:
    """The number of foreground classes of registered datasets (see :func:`thing_classes_of`)."""
    return len(thing_classes_of(names))
