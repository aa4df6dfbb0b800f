"""``python -m snakevi STEP ...``: the ``snakevi`` command (what the train step's ranks run)."""

import sys

from snakevi.cli import main

sys.exit(main())
