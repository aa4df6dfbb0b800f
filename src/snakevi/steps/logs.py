"""Logging for step runs: messages, warnings and errors go to a log file and to stderr."""

from __future__ import annotations

import contextlib
import faulthandler
import gc
import logging
import os
import sys
import time
from typing import Iterator


@contextlib.contextmanager
def step_logging(
    log_file: str | os.PathLike | None = None, *, step: str = "snakevi", ends_process: bool = False
) -> Iterator[logging.Logger]:
    """Send ``logging`` records and warnings of a step to ``log_file`` (and to stderr).

    An exception raised in the block is written to the log as one readable line (and its
    traceback) before it propagates, so the rule's log says why the step failed.

    Parameters
    ----------
    log_file
        The step's log (its folder is made); None logs to stderr only.
    step
        The step's name in the "finished"/"failed" lines.
    ends_process
        True in a workflow script, whose process ends with the step. An error that carries an
        ``exit_status`` (:class:`~snakevi.train.recipe.TrainingInterrupted`: stopped by SIGTERM,
        checkpoint saved) then exits with that status, logged without a traceback, the same status
        as the ``snakevi`` command; and a step that finished freezes the garbage collector, which
        spares the process the interpreter's final collection of everything imported (about 1 s
        at exit once torch is loaded, 0.3 s with anndata). Leave it False where the process goes
        on (the CLI called in-process, tests, notebooks).
    """
    logger = logging.getLogger("snakevi")
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S")
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_file is not None:
        os.makedirs(os.path.dirname(os.path.abspath(log_file)), exist_ok=True)
        handlers.append(logging.FileHandler(log_file, mode="w", encoding="utf-8"))
    for h in handlers:
        h.setFormatter(fmt)
        logger.addHandler(h)
    # A crash in native code (HDF5, torch) kills the process before Python can log anything:
    # then the log at least holds the Python stack of where it happened.
    file_handler = handlers[-1] if log_file is not None else None
    crash_report = faulthandler.is_enabled()
    if file_handler is not None:
        faulthandler.enable(file=file_handler.stream)
    old_level = logger.level
    logger.setLevel(logging.INFO)
    logging.captureWarnings(True)
    warn_logger = logging.getLogger("py.warnings")
    for h in handlers:
        warn_logger.addHandler(h)
    start = time.perf_counter()
    try:
        yield logger
        logger.info("%s finished in %.1f s", step, time.perf_counter() - start)
    except BaseException as err:
        # Errors about the inputs (ValueError, StepError) or an expected stop need no traceback.
        expected = isinstance(err, ValueError) or getattr(err, "expected", False)
        logger.error("%s failed: %s: %s", step, type(err).__name__, err, exc_info=not expected)
        status = getattr(err, "exit_status", None)
        if ends_process and status is not None:
            raise SystemExit(status) from None
        raise
    finally:
        if file_handler is not None:
            faulthandler.disable()
            if crash_report:  # back to stderr, where a test runner's or `python -X faulthandler` had it
                with contextlib.suppress(Exception):
                    faulthandler.enable()
        logging.captureWarnings(False)
        for h in handlers:
            logger.removeHandler(h)
            warn_logger.removeHandler(h)
            h.close()
        logger.setLevel(old_level)
    if ends_process:
        gc.freeze()
