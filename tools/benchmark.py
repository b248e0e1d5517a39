#!/usr/bin/env python
"""Training and inference speed of a config's model beside torchvision's; see ``--help``."""

from rcnnzoo.tools.benchmark import main

if __name__ == "__main__":
    main()
