"""Snakemake script of rule report (snakevi.steps.report)."""

from pathlib import Path

from snakevi.steps.logs import step_logging
from snakevi.steps.report import report

sm = snakemake  # noqa: F821 - injected by Snakemake
with step_logging(sm.log[0], step=f"report {sm.wildcards.run}", ends_process=True):
    report(sm.input.history, sm.input.latent, sm.input.prepared, sm.input.registry, Path(sm.output.metrics).parent,
           run=sm.params.run, group=sm.params.group, seed=sm.params.seed,
           latent_key=sm.params.latent_key, logger=sm.params.logger)
