#!/usr/bin/env python
"""Save a config's proposals (selective search, RPN) for every image of a dataset; see ``--help``.

Also installed as the ``rcnnzoo-precompute-proposals`` command.
"""

from rcnnzoo.tools.precompute_proposals import main

if __name__ == "__main__":
    main()
