"""Snakemake script of rule prepare (snakevi.steps.prepare)."""

from snakevi.steps.logs import step_logging
from snakevi.steps.prepare import prepare

sm = snakemake  # noqa: F821 - injected by Snakemake
with step_logging(sm.log[0], step=f"prepare {sm.wildcards.run}", ends_process=True):
    prepare(sm.input.h5ad, sm.input.registry, sm.output.prepared, seed=sm.params.seed, **sm.params.split)
