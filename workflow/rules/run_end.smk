# Let the snakemake process exit as soon as the workflow is done: about 1.5 s of every run,
# a tenth of the demo's fixed cost. Only the main Snakefile's hooks count, so a host workflow
# that uses snakevi as a module keeps its own.
import gc
import sys
import threading
from pathlib import Path


def cancel_rescheduling_timers():
    """Cancel the job scheduler's pending re-evaluation timers.

    Snakemake's job-rate limiter (--max-jobs-per-timespan, default 100/1s) starts a non-daemon
    threading.Timer after every scheduling round, to look again once the timespan has passed.
    After the last job there is nothing left to schedule, yet the interpreter waits for that
    timer (1 s) before it exits. Only timers whose function lives in Snakemake's scheduling
    package are touched.
    """
    for thread in threading.enumerate():
        if (
            isinstance(thread, threading.Timer)
            and getattr(thread.function, "__module__", "").startswith(
                "snakemake.scheduling"
            )
            and not thread.finished.is_set()
        ):
            thread.cancel()


def is_snakemake_command():
    """True in the process of the `snakemake` command (or `python -m snakemake`).

    Not in a Python session that runs workflows through Snakemake's API: that process goes on
    after the run, so there is no exit to hasten and its heap must stay collectable.
    """
    main_spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    return Path(sys.argv[0]).name == "snakemake" or (
        main_spec is not None and main_spec.name == "snakemake.__main__"
    )


def end_run_promptly():
    """What the snakemake command does once every job has finished or the run has failed."""
    if not is_snakemake_command():
        return
    cancel_rescheduling_timers()
    # The process exits next; its final garbage collection would walk everything imported and
    # built (DAG, rules, plugins: about 0.6 s) only to free memory the OS reclaims anyway. The
    # job scripts end with the same call.
    gc.freeze()


onsuccess:
    end_run_promptly()


onerror:
    end_run_promptly()
