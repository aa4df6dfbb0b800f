"""Snakemake script of rule summary: one row per run (snakevi.steps.report.summarize)."""

import gc

from snakevi.steps.logs import step_logging
from snakevi.steps.report import summarize

sm = snakemake  # noqa: F821 - injected by Snakemake
with step_logging(sm.log[0], step="summary"):
    summarize(list(sm.input.metrics), sm.output.summary, list(sm.input.integration))

# The job's process ends here: spare it the interpreter's final garbage collection of all
# that was imported (about 1 s at exit once torch is loaded, 0.3 s with anndata).
gc.freeze()
