"""Snakemake script of rule simulate: write the demo dataset (snakevi.steps.simulate)."""

from snakevi.steps.logs import step_logging
from snakevi.steps.simulate import simulate_dataset

with step_logging(snakemake.log[0], step="simulate"):  # noqa: F821 - injected by Snakemake
    simulate_dataset(snakemake.output.h5ad, **snakemake.params.simulate)  # noqa: F821
