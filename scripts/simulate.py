"""Snakemake script of rule simulate: write the demo dataset (snakevi.steps.simulate)."""

import gc

from snakevi.steps.logs import step_logging
from snakevi.steps.simulate import simulate_dataset

with step_logging(snakemake.log[0], step="simulate"):  # noqa: F821 - injected by Snakemake
    simulate_dataset(snakemake.output.h5ad, **snakemake.params.simulate)  # noqa: F821

# The job's process ends here: spare it the interpreter's final garbage collection of all
# that was imported (about 1 s at exit once torch is loaded, 0.3 s with anndata).
gc.freeze()
