"""Snakemake script of rule export (snakevi.steps.export)."""

from snakevi.steps.export import export
from snakevi.steps.logs import step_logging

sm = snakemake  # noqa: F821 - injected by Snakemake
with step_logging(sm.log[0], step=f"export {sm.wildcards.run}", ends_process=True):
    params = {k: v for k, v in sm.params.export.items() if k != "scvi_tools"}  # rule export_scvi_tools's key
    export(sm.input.model, sm.input.h5ad, sm.output.embedding, latent=sm.input.latent, threads=sm.threads,
           **params)
