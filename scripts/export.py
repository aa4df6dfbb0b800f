"""Snakemake script of rule export (snakevi.steps.export)."""

import gc

from snakevi.steps.export import export
from snakevi.steps.logs import step_logging

sm = snakemake  # noqa: F821 - injected by Snakemake
with step_logging(sm.log[0], step=f"export {sm.wildcards.run}"):
    export(sm.input.model, sm.input.h5ad, sm.output.embedding, latent=sm.input.latent, threads=sm.threads,
           **sm.params.export)

# The job's process ends here: spare it the interpreter's final garbage collection of all
# that was imported (about 1 s at exit once torch is loaded, 0.3 s with anndata).
gc.freeze()
