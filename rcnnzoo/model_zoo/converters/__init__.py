"""Checkpoint converters: other projects' state dicts renamed and reordered for rcnnzoo models."""

from .torchvision import TORCHVISION_ARCHS, ConversionError, convert_torchvision_state_dict

__all__ = ["ConversionError", "TORCHVISION_ARCHS", "convert_torchvision_state_dict"]
