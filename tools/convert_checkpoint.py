#!/usr/bin/env python
"""Convert a torchvision detection checkpoint into an rcnnzoo .pth; see ``--help``."""

from rcnnzoo.tools.convert_checkpoint import main

if __name__ == "__main__":
    main()
