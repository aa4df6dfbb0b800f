"""Snakemake script of rule train (snakevi.steps.train); resumes from results/{run}/checkpoints/."""

from snakevi.steps.logs import step_logging
from snakevi.steps.train import train

sm = snakemake  # noqa: F821 - injected by Snakemake
# ends_process: a SIGTERM stop after a checkpoint exits 3, as `snakevi train` does.
with step_logging(sm.log[0], step=f"train {sm.wildcards.run}", ends_process=True):
    train(
        sm.input.prepared,
        sm.input.registry,
        sm.output.model,
        sm.output.history,
        latent_out=sm.output.latent,
        model_class=sm.params.model_class,
        checkpoint_dir=sm.params.checkpoint_dir,
        checkpoint_store=sm.params.checkpoint_store,
        model_params=sm.params.model,
        train_params=sm.params.train,
        checkpoint_every_seconds=sm.params.checkpoint_every_seconds,
        seed=sm.params.seed,
        accelerator=sm.params.accelerator,
        threads=sm.threads,
        devices=sm.params.devices,
        nodes=sm.params.nodes,
        launcher=sm.params.launcher,
        logger=sm.params.logger,
        log_every_n_steps=sm.params.log_every_n_steps,
        run_name=sm.params.run_name,
    )
