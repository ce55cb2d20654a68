"""``python -m newwave``: the command line."""

import sys

from newwave.cli import main

sys.exit(main())
