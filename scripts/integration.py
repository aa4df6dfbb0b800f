"""Snakemake script of rule integration (snakevi.steps.integration)."""

from pathlib import Path

from snakevi.steps.integration import integration
from snakevi.steps.logs import step_logging

sm = snakemake  # noqa: F821 - injected by Snakemake
with step_logging(sm.log[0], step=f"integration {sm.wildcards.run}", ends_process=True):
    integration(sm.input.latent, sm.input.prepared, sm.input.registry, Path(sm.output.scores).parent,
                run=sm.params.run, latent_key=sm.params.latent_key, metrics=sm.params.metrics)
