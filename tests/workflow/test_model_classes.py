"""model_class in the workflow: a tiny linear_scvi run end to end, and scanvi's setup needs refused up front."""

from __future__ import annotations

import json

import anndata
from wf_helpers import snakemake, write_config

TINY = {"simulate": {"n_cells": 300, "n_genes": 60, "n_batches": 2, "n_groups": 3}}
RUN = {"dataset": "resources/demo.h5ad", "setup": {"batch_key": "batch", "labels_key": "label"},
       "model": {"n_latent": 4, "n_hidden": 16}, "train": {"max_epochs": 2, "plan": {"lr": 0.005}},
       "report": {"metrics": False}, "resources": {"threads": 1}}


def test_a_linear_scvi_run_trains_with_scvi_tools_defaults_and_exports_its_key(tmp_path):
    write_config(tmp_path, {**TINY, "runs": {"lin": {**RUN, "model_class": "linear_scvi"}}})
    snakemake(tmp_path, "--cores", "2", "-q")
    meta = json.loads((tmp_path / "results" / "lin" / "model" / "model.json").read_text())
    assert meta["model_name"] == "LinearSCVI"
    # The schema's linear_scvi defaults (scvi-tools' LinearSCVI), not scVI's.
    assert meta["init_params"]["gene_likelihood"] == "nb" and meta["init_params"]["use_observed_lib_size"] is False
    emb = anndata.read_h5ad(tmp_path / "results" / "lin" / "embedding.h5ad")
    assert list(emb.obsm) == ["X_LinearSCVI"] and emb.obsm["X_LinearSCVI"].shape == (300, 4)
    assert (tmp_path / "results" / "lin" / "report" / "metrics.json").is_file()


def test_scanvi_without_labels_is_refused_before_any_job_naming_the_key(tmp_path):
    run = {**RUN, "model_class": "scanvi", "setup": {"batch_key": "batch", "labels_key": "label"}}
    write_config(tmp_path, {**TINY, "runs": {"semi": run}})
    out = snakemake(tmp_path, "--cores", "1", "-n", check=False)
    assert out.returncode != 0
    assert "Invalid config at runs.semi.setup.unlabeled_category" in out.stdout + out.stderr
    assert not (tmp_path / "results").exists()
