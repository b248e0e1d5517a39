#!/usr/bin/env python
"""Draw a model's detections on images; see ``--help``."""

from rcnnzoo.tools.demo import main

if __name__ == "__main__":
    main()
