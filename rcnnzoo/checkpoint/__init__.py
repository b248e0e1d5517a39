"""Checkpoints: crash-safe saving, safe loading, and a report of what was loaded."""

from .checkpointer import Checkpointer, CheckpointError, LoadReport, atomic_write

__all__ = ["Checkpointer", "LoadReport", "CheckpointError", "atomic_write"]
