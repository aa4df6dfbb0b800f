"""Snakemake script of rule report (snakevi.steps.report)."""

import gc
from pathlib import Path

from snakevi.steps.logs import step_logging
from snakevi.steps.report import report

sm = snakemake  # noqa: F821 - injected by Snakemake
with step_logging(sm.log[0], step=f"report {sm.wildcards.run}"):
    report(sm.input.history, sm.input.latent, sm.input.prepared, sm.input.registry, Path(sm.output.metrics).parent,
           run=sm.params.run, latent_key=sm.params.latent_key)

# The job's process ends here: spare it the interpreter's final garbage collection of all
# that was imported (about 1 s at exit once torch is loaded, 0.3 s with anndata).
gc.freeze()
