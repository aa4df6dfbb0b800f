"""Snakemake script of rule integration (snakevi.steps.integration)."""

import gc
from pathlib import Path

from snakevi.steps.integration import integration
from snakevi.steps.logs import step_logging

sm = snakemake  # noqa: F821 - injected by Snakemake
with step_logging(sm.log[0], step=f"integration {sm.wildcards.run}"):
    integration(sm.input.latent, sm.input.prepared, sm.input.registry, Path(sm.output.scores).parent,
                run=sm.params.run, latent_key=sm.params.latent_key, metrics=sm.params.metrics, seed=sm.params.seed)

# The job's process ends here: spare it the interpreter's final garbage collection of all
# that was imported (about 1 s at exit once torch is loaded, 0.3 s with anndata).
gc.freeze()
