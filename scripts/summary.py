"""Snakemake script of rule summary: one row per run (snakevi.steps.report.summarize)."""

from snakevi.steps.logs import step_logging
from snakevi.steps.report import summarize

sm = snakemake  # noqa: F821 - injected by Snakemake
with step_logging(sm.log[0], step="summary", ends_process=True):
    summarize(list(sm.input.metrics), sm.output.summary, list(sm.input.integration))
