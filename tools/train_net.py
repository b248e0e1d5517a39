#!/usr/bin/env python
"""Train and evaluate from a lazy config; see ``rcnnzoo/tools/train_net.py`` or ``--help``.

Also installed as the ``rcnnzoo-train`` command.
"""

from rcnnzoo.tools.train_net import main

if __name__ == "__main__":
    main()
