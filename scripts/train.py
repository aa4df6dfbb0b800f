"""Snakemake script of rule train (snakevi.steps.train); resumes from results/{run}/checkpoints/."""

import gc
import sys

from snakevi.steps.logs import step_logging
from snakevi.steps.train import TrainingInterrupted, train

sm = snakemake  # noqa: F821 - injected by Snakemake
try:
    with step_logging(sm.log[0], step=f"train {sm.wildcards.run}"):
        train(
            sm.input.prepared,
            sm.input.registry,
            sm.output.model,
            sm.output.history,
            latent_out=sm.output.latent,
            model_class=sm.params.model_class,
            checkpoint_dir=sm.params.checkpoint_dir,
            model_params=sm.params.model,
            train_params=sm.params.train,
            checkpoint_every_seconds=sm.params.checkpoint_every_seconds,
            seed=sm.params.seed,
            accelerator=sm.params.accelerator,
            threads=sm.threads,
        )
except TrainingInterrupted as stop:
    # Stopped by SIGTERM after saving a checkpoint: the same status as `snakevi train` (the log
    # already says why and how to resume), and no traceback.
    sys.exit(stop.exit_status)

# The job's process ends here: spare it the interpreter's final garbage collection of all
# that was imported (about 1 s at exit once torch is loaded, 0.3 s with anndata).
gc.freeze()
