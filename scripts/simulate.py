"""Snakemake script of rule simulate: write the demo dataset (snakevi.steps.simulate)."""

from snakevi.steps.logs import step_logging
from snakevi.steps.simulate import simulate_dataset

sm = snakemake  # noqa: F821 - injected by Snakemake
with step_logging(sm.log[0], step="simulate", ends_process=True):
    simulate_dataset(sm.output.h5ad, **sm.params.simulate)
