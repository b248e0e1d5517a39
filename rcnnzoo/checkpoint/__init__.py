"""Checkpoints: crash-safe saving, safe loading, a report of what was loaded, and training state."""

from .checkpointer import Checkpointer, CheckpointError, LoadReport, atomic_write
from .training_state import PerRankState, RNGState, get_rng_state, preserved_rng_state, set_rng_state

__all__ = [
    "Checkpointer",
    "LoadReport",
    "CheckpointError",
    "atomic_write",
    "RNGState",
    "PerRankState",
    "get_rng_state",
    "set_rng_state",
    "preserved_rng_state",
]
