"""``python -m maild.cli``: the same as the ``maild`` command."""

import sys

from maild.cli.main import main

if __name__ == "__main__":  # a spawned worker re-imports this module as __mp_main__
    sys.exit(main())
