"""Snakemake script of rule register (snakevi.steps.register)."""

from snakevi.steps.logs import step_logging
from snakevi.steps.register import register

sm = snakemake  # noqa: F821 - injected by Snakemake
with step_logging(sm.log[0], step=f"register {sm.wildcards.run}", ends_process=True):
    register(sm.input.h5ad, sm.output.registry, **sm.params.setup)
