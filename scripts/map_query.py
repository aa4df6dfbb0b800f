"""Snakemake script of rule map_query (snakevi.steps.map_query)."""

from snakevi.steps.logs import step_logging
from snakevi.steps.map_query import map_query

sm = snakemake  # noqa: F821 - injected by Snakemake
query = sm.params.query
with step_logging(sm.log[0], step=f"map_query {sm.wildcards.query}", ends_process=True):
    map_query(
        sm.input.reference,
        sm.input.h5ad,
        sm.output.model,
        sm.output.history,
        sm.output.embedding,
        sm.output.summary,
        train_params=query["train"],
        seed=query["seed"],
        use_labels=query["use_labels"],
        unfrozen=query["unfrozen"],
        latent_key=query["export"]["latent_key"],
        predicted_key=query["export"]["predicted_key"],
        accelerator="cpu",
        threads=sm.threads,
    )
