"""Snakemake script of rule register (snakevi.steps.register)."""

import gc

from snakevi.steps.logs import step_logging
from snakevi.steps.register import register

sm = snakemake  # noqa: F821 - injected by Snakemake
with step_logging(sm.log[0], step=f"register {sm.wildcards.run}"):
    register(sm.input.h5ad, sm.output.registry, **sm.params.setup)

# The job's process ends here: spare it the interpreter's final garbage collection of all
# that was imported (about 1 s at exit once torch is loaded, 0.3 s with anndata).
gc.freeze()
