"""The meta-architecture registry."""

from rcnnzoo.utils.registry import Registry

__all__ = ["META_ARCH_REGISTRY"]

META_ARCH_REGISTRY = Registry("META_ARCH")
META_ARCH_REGISTRY.__doc__ = """Whole models (GeneralizedRCNN, and R-CNN's crop-and-warp pipeline)."""
