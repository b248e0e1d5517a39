#!/usr/bin/env python
"""Check a config's datasets before training; see ``rcnnzoo/tools/check_dataset.py`` or ``--help``.

Also installed as the ``rcnnzoo-check-dataset`` command.
"""

from rcnnzoo.tools.check_dataset import main

if __name__ == "__main__":
    raise SystemExit(main())
