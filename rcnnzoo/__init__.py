"""rcnnzoo: the R-CNN family of object detectors as registered parts and lazy configs."""

__version__ = "0.1.0"
