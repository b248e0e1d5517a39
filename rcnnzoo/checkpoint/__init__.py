"""Checkpoints: crash-safe saving, safe loading (torch files and plain pickles), a report of what was
loaded, and training state."""

from .checkpointer import Checkpointer, CheckpointError, LoadReport, atomic_write, class_dependent_prefixes
from .class_metadata import METADATA_KEY, ClassMetadata, class_metadata_of, read_class_metadata
from .safe_pickle import UnsafePickleError, load_pickle
from .training_state import PerRankState, RNGState, get_rng_state, preserved_rng_state, set_rng_state

__all__ = [
    "Checkpointer",
    "class_dependent_prefixes",
    "LoadReport",
    "CheckpointError",
    "UnsafePickleError",
    "load_pickle",
    "atomic_write",
    "RNGState",
    "PerRankState",
    "get_rng_state",
    "set_rng_state",
    "preserved_rng_state",
    "ClassMetadata",
    "class_metadata_of",
    "read_class_metadata",
    "METADATA_KEY",
]
