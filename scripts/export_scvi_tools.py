"""Snakemake script of rule export_scvi_tools (snakevi.steps.export_scvi_tools)."""

from snakevi.steps.export_scvi_tools import export_scvi_tools
from snakevi.steps.logs import step_logging

sm = snakemake  # noqa: F821 - injected by Snakemake
with step_logging(sm.log[0], step=f"export_scvi_tools {sm.wildcards.run}", ends_process=True):
    export_scvi_tools(sm.input.model, sm.output.model)
