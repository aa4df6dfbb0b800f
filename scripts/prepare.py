"""Snakemake script of rule prepare (snakevi.steps.prepare)."""

import gc

from snakevi.steps.logs import step_logging
from snakevi.steps.prepare import prepare

sm = snakemake  # noqa: F821 - injected by Snakemake
with step_logging(sm.log[0], step=f"prepare {sm.wildcards.run}"):
    prepare(sm.input.h5ad, sm.input.registry, sm.output.prepared, seed=sm.params.seed, **sm.params.split)

# The job's process ends here: spare it the interpreter's final garbage collection of all
# that was imported (about 1 s at exit once torch is loaded, 0.3 s with anndata).
gc.freeze()
