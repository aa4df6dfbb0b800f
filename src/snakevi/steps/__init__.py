"""The workflow's steps as plain functions: one per step, explicit inputs, outputs and parameters.

The same functions run behind the Snakemake rules (``scripts/*.py``), the ``snakevi`` command
(:mod:`snakevi.cli`) and Python code::

    register(h5ad, registry_json, batch_key=..., n_top_genes=...)
    prepare(h5ad, registry_json, prepared_dir, batch_size=..., seed=...)
    train(prepared_dir, registry_json, model_dir, history_csv, model_params=..., train_params=...)
    export(model_dir, h5ad, embedding_h5ad, latent_key="X_scVI")
    report(history_csv, latent_npy, prepared_dir, registry_json, report_dir, run=...)
    integration(latent_npy, prepared_dir, registry_json, report_dir, run=...)
    summarize([metrics_json, ...], summary_tsv, [integration_json, ...])

Each writes its outputs atomically (temporary path, then rename) and raises
:class:`StepError` (a ``ValueError``) with the file, key or value and the fix when its inputs
are unusable, or :class:`DiskFullError` (also a ``ValueError``) naming the folder and about how
much space a write needed when its filesystem has no room left. Importing this package (what a
step script does first) loads numpy only: torch, anndata, pandas, scipy and matplotlib are
imported inside the steps, when they run.
"""

from __future__ import annotations

from snakevi.steps._io import DiskFullError, StepError
from snakevi.steps.export import export
from snakevi.steps.integration import integration
from snakevi.steps.prepare import prepare
from snakevi.steps.register import register
from snakevi.steps.report import report, summarize
from snakevi.steps.simulate import simulate_dataset
from snakevi.steps.train import train

__all__ = ["DiskFullError", "StepError", "export", "integration", "prepare", "register", "report",
           "simulate_dataset", "summarize", "train"]
