#!/usr/bin/env python
"""Convert a torchvision or detectron2 checkpoint (a detector or an ImageNet backbone) into an
rcnnzoo .pth; see ``--help``."""

from rcnnzoo.tools.convert_checkpoint import main

if __name__ == "__main__":
    main()
