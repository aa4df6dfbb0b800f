"""``python -m snakevi STEP ...``: the ``snakevi`` command (what the train step's ranks run)."""

import logging
import os
import sys

from snakevi.cli import main

status = main()
if int(os.environ.get("WORLD_SIZE", "1")) > 1:
    # A rank of a process group, its work written and closed: gloo's threads can still be
    # winding down after destroy_process_group, and the C++ teardown of interpreter exit then
    # aborts the process ("terminate called without an active exception", SIGABRT), which
    # would fail a finished training. Flush and leave without that teardown.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)
sys.exit(status)
