"""The workflow on the shared real datasets (Kang PBMC, CellBench lung), 2 epochs each, in parallel."""

from __future__ import annotations

import json

import anndata
import numpy as np
import pandas as pd
import pytest

from wf_helpers import snakemake, write_config

N_LATENT = 6
HISTORY_COLUMNS = {"train_loss", "elbo_train", "reconstruction_loss_train", "kl_local_train", "kl_global_train",
                   "kl_weight", "validation_loss", "elbo_validation", "reconstruction_loss_validation",
                   "kl_local_validation", "kl_global_validation"}


@pytest.fixture(scope="module")
def real_runs(tmp_path_factory, kang_path, cellbench_path):
    workdir = tmp_path_factory.mktemp("real")
    common = {"model": {"n_latent": N_LATENT}, "train": {"max_epochs": 2}, "resources": {"threads": 1}}
    config = {
        "runs": {
            "kang": {"dataset": str(kang_path), "setup": {"batch_key": "donor", "labels_key": "cell_type"},
                     "split": {"batch_size": 256}, **common},
            "cellbench": {"dataset": str(cellbench_path),
                          "setup": {"batch_key": "batch", "labels_key": "cell_line", "n_top_genes": 800},
                          **common},
        }
    }
    write_config(workdir, config)
    snakemake(workdir, "--cores", "2")
    return workdir, {"kang": kang_path, "cellbench": cellbench_path}


@pytest.mark.parametrize("run,n_obs,n_vars,labels", [
    ("kang", 12261, 1287, "cell_type"),
    ("cellbench", 1408, 800, "cell_line"),
])
def test_every_artifact_of_a_real_run(real_runs, run, n_obs, n_vars, labels):
    from snakevi.model import SCVI

    workdir, paths = real_runs
    out = workdir / "results" / run
    emb = anndata.read_h5ad(out / "embedding.h5ad")
    assert emb.shape == (n_obs, n_vars)
    assert emb.obsm["X_scVI"].shape == (n_obs, N_LATENT)
    assert np.isfinite(emb.obsm["X_scVI"]).all()
    assert labels in emb.obs.columns
    source = anndata.read_h5ad(paths[run], backed="r")
    assert list(emb.obs_names) == list(source.obs_names)
    model = SCVI.load(out / "model", emb)
    np.testing.assert_allclose(model.get_latent_representation(), emb.obsm["X_scVI"], rtol=1e-5, atol=1e-5)
    history = pd.read_csv(out / "history.csv")
    assert len(history) == 2 and HISTORY_COLUMNS <= set(history.columns)
    for name in ("loss_elbo.png", "loss_reconstruction.png", "loss_kl.png", "latent_batch.png", "latent_label.png"):
        assert (out / "report" / name).read_bytes()[:4] == b"\x89PNG"
    metrics = json.loads((out / "report" / "metrics.json").read_text())
    assert metrics["n_obs"] == n_obs and metrics["n_vars"] == n_vars and metrics["epochs"] == 2
    summary = pd.read_csv(workdir / "results" / "summary.tsv", sep="\t").set_index("run")
    assert sorted(summary.index) == ["cellbench", "kang"]
    assert summary.loc[run, "n_obs"] == n_obs and summary.loc[run, "n_latent"] == N_LATENT
    assert summary.loc[run, "elbo_validation"] == pytest.approx(history["elbo_validation"].iloc[-1])
    # Integration metrics of the latent space and the PCA baseline, also in the summary.
    scores = pd.read_csv(out / "report" / "metrics.tsv", sep="\t", index_col="embedding")
    assert list(scores.index) == ["X_scVI", "PCA (unintegrated)"]
    assert scores.loc["X_scVI"].notna().all() and 0 < scores.loc["X_scVI", "Total"] < 1
    assert (out / "report" / "integration.png").read_bytes()[:4] == b"\x89PNG"
    scored = json.loads((out / "report" / "integration.json").read_text())
    assert scored["Total"] == pytest.approx(scores.loc["X_scVI", "Total"], abs=1e-5)
    assert summary.loc[run, "Total"] == pytest.approx(scored["Total"])
