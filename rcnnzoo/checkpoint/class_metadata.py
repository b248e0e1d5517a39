"""The classes a model was trained on, carried inside its checkpoints.

A checkpoint that only holds weights says nothing about what label 2 means; a user who loads it
in a new process (a demo, an inference script, a fine-tune) would have to restate the class
names and the dataset's category ids exactly as they were. Training therefore saves, beside the
weights, a ``"metadata"`` entry::

    {"thing_classes": ["circle", "rectangle", "triangle"],   # name of each contiguous label
     "thing_dataset_id_to_contiguous_id": {1: 0, 2: 1, 3: 2},  # the dataset's own ids -> labels
     "dataset_names": ["shapes_train"]}

Plain lists, dicts, ints and strings only, so the checkpoint still loads with ``weights_only=True``.
Readers get it from ``Checkpointer(model).load(path).extra["metadata"]`` or :func:`read_class_metadata`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from rcnnzoo.data.catalog import MetadataCatalog

__all__ = ["ClassMetadata", "class_metadata_of", "read_class_metadata", "METADATA_KEY"]

logger = logging.getLogger(__name__)

METADATA_KEY = "metadata"


def class_metadata_of(names: str | Sequence[str]) -> dict[str, Any] | None:
    """The class metadata of registered datasets, as saved in checkpoints.

    Datasets trained together must agree on their classes; the first one that has ``thing_classes``
    gives them. Call this after the datasets were loaded (loading fills their metadata).

    Returns:
        ``{"thing_classes", "thing_dataset_id_to_contiguous_id", "dataset_names"}``, or ``None``
        when no dataset has ``thing_classes``.
    """
    names = [names] if isinstance(names, str) else list(names)
    for name in names:
        meta = MetadataCatalog.get(name)
        classes = meta.get("thing_classes")
        if not classes:
            continue
        id_map = meta.get("thing_dataset_id_to_contiguous_id") or {i: i for i in range(len(classes))}
        return {
            "thing_classes": [str(c) for c in classes],
            "thing_dataset_id_to_contiguous_id": {int(k): int(v) for k, v in id_map.items()},
            "dataset_names": [str(n) for n in names],
        }
    return None


def read_class_metadata(checkpoint: dict[str, Any]) -> dict[str, Any] | None:
    """The ``"metadata"`` entry of a loaded checkpoint dict (or of a ``LoadReport.extra``), if any."""
    meta = checkpoint.get(METADATA_KEY)
    if not isinstance(meta, dict) or not meta.get("thing_classes"):
        return None
    return meta


class ClassMetadata:
    """A checkpointable holding the training data's class metadata (see the module docstring).

    Registered with the trainer's :class:`~rcnnzoo.checkpoint.Checkpointer` so that every checkpoint
    carries it; on ``--resume`` it checks that the data still has the same classes.
    """

    def __init__(self, metadata: dict[str, Any]) -> None:
        self.metadata = metadata

    def state_dict(self) -> dict[str, Any]:
        return dict(self.metadata)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        saved, current = state.get("thing_classes"), self.metadata.get("thing_classes")
        if saved != current:
            logger.warning(
                f"The checkpoint was trained on classes {saved} but the data now has {current}; "
                "the new data's classes are kept"
            )
