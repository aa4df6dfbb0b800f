"""Snakemake script of rule summary: one row per run, one per run group (snakevi.steps.report.summarize)."""

from snakevi.steps.logs import step_logging
from snakevi.steps.report import summarize

sm = snakemake  # noqa: F821 - injected by Snakemake
with step_logging(sm.log[0], step="summary", ends_process=True):
    # The runs built now (inputs) and those this invocation left alone but whose results exist.
    summarize([*sm.input.metrics, *sm.params.kept_metrics], sm.output.summary,
              [*sm.input.integration, *sm.params.kept_integration], groups_tsv=sm.output.groups)
