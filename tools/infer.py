#!/usr/bin/env python
"""Detect objects in a folder of images; write COCO results json and drawings. See ``--help``."""

from rcnnzoo.tools.infer import main

if __name__ == "__main__":
    main()
