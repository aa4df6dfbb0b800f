"""scANVI and reference mapping through the workflow, on Kang with the labels of two donors hidden.

One snakemake call builds two runs and one query:

- ``all8``: scANVI on all eight donors, the cell types of donors 1256 and 1488 set to "Unknown";
  their cells are predicted.
- ``ref6``: scANVI on the other six donors only; the query ``two`` maps donors 1256 and 1488
  onto it (scArches) and predicts their labels.

Few epochs (CI time); the accuracy bars are well below what full training reaches
(benchmarks/scanvi_accuracy.py) and far above chance (8 cell types, the largest 42%).
"""

from __future__ import annotations

import json

import anndata
import numpy as np
import pandas as pd
import pytest

from wf_helpers import snakemake, write_config

HIDDEN = ["1256", "1488"]


@pytest.fixture(scope="module")
def scanvi_workdir(tmp_path_factory, kang_path):
    workdir = tmp_path_factory.mktemp("scanvi")
    kang = anndata.read_h5ad(kang_path)
    hidden = kang.obs["donor"].astype(str).isin(HIDDEN).to_numpy()
    kang.obs["cell_type_truth"] = kang.obs["cell_type"].astype(str)
    masked = kang.copy()
    masked.obs["cell_type"] = np.where(hidden, "Unknown", kang.obs["cell_type"].astype(str))
    masked.write_h5ad(workdir / "kang_masked.h5ad")
    kang[~hidden].copy().write_h5ad(workdir / "kang_ref6.h5ad")
    query = kang[hidden].copy()
    query.obs = query.obs.drop(columns="cell_type")  # a new dataset: no labels
    query.write_h5ad(workdir / "kang_query2.h5ad")
    scanvi = {
        "model_class": "scanvi",
        "setup": {"batch_key": "donor", "labels_key": "cell_type", "unlabeled_category": "Unknown"},
        "model": {"n_latent": 10},
        "split": {"batch_size": 256},
        "train": {"max_epochs": 8, "scanvi": {"max_epochs": 3}},
        "resources": {"threads": 2},
    }
    config = {
        "runs": {
            "all8": {"dataset": "kang_masked.h5ad", **scanvi},
            "ref6": {"dataset": "kang_ref6.h5ad", **scanvi},
        },
        "queries": {
            "two": {"reference": "ref6", "dataset": "kang_query2.h5ad", "train": {"max_epochs": 10}},
        },
    }
    write_config(workdir, config)
    snakemake(workdir, "--cores", "2", timeout=1500)
    truth = kang.obs["cell_type"].astype(str).to_numpy()
    return workdir, hidden, truth


def test_scanvi_run_predicts_the_hidden_donors(scanvi_workdir):
    from snakevi.model import SCANVI

    workdir, hidden, truth = scanvi_workdir
    out = workdir / "results" / "all8"
    emb = anndata.read_h5ad(out / "embedding.h5ad")
    assert emb.obsm["X_scANVI"].shape == (12261, 10)
    predicted = emb.obs["C_scANVI"].astype(str).to_numpy()
    assert set(predicted) <= set(truth)  # never "Unknown"
    prob = emb.obs["C_scANVI_probability"].to_numpy()
    assert ((prob > 0) & (prob <= 1)).all()
    accuracy = float(np.mean(predicted[hidden] == truth[hidden]))
    assert accuracy > 0.75, accuracy
    history = pd.read_csv(out / "history.csv")
    assert list(history["phase"].unique()) == ["scvi", "scanvi"]
    assert (history["phase"] == "scvi").sum() == 8 and (history["phase"] == "scanvi").sum() == 3
    scanvi_rows = history[history["phase"] == "scanvi"]
    for name in ("train_classification_loss", "train_accuracy", "validation_accuracy", "validation_f1_score",
                 "validation_calibration_error", "elbo_validation"):
        assert scanvi_rows[name].notna().all(), name
    model = SCANVI.load(out / "model", emb)
    np.testing.assert_array_equal(np.asarray(model.predict(), dtype=str), predicted)
    # The report scores the integration on the labelled cells only.
    scores = pd.read_csv(out / "report" / "metrics.tsv", sep="\t", index_col="embedding")
    assert list(scores.index) == ["X_scANVI", "PCA (unintegrated)"] and 0 < scores.loc["X_scANVI", "Total"] < 1


def test_query_mapped_onto_a_six_donor_reference(scanvi_workdir):
    from snakevi.model import SCANVI

    workdir, hidden, truth = scanvi_workdir
    out = workdir / "results" / "queries" / "two"
    emb = anndata.read_h5ad(out / "embedding.h5ad")
    assert emb.n_obs == int(hidden.sum()) and emb.obsm["X_scANVI"].shape[1] == 10
    predicted = emb.obs["C_scANVI"].astype(str).to_numpy()
    accuracy = float(np.mean(predicted == truth[hidden]))
    assert accuracy > 0.75, accuracy
    summary = json.loads((out / "summary.json").read_text())
    assert summary["model"] == "SCANVI" and summary["query_batches"] == HIDDEN
    assert summary["n_obs"] == int(hidden.sum()) and "accuracy_vs_cell_type" not in summary  # the query had none
    history = pd.read_csv(out / "history.csv")
    assert len(history) == 10
    # The query model holds the reference's six donors and the two new ones, in that order.
    query_model = SCANVI.load(out / "model", emb)
    donors = query_model.registry["fields"]["batch"]["categorical_mapping"]
    assert donors[-2:] == HIDDEN and len(donors) == 8
    np.testing.assert_allclose(query_model.get_latent_representation(), emb.obsm["X_scANVI"], rtol=1e-5, atol=1e-5)


def test_query_with_a_missing_batch_column_fails_naming_it(scanvi_workdir):
    workdir, _, _ = scanvi_workdir
    bad = anndata.read_h5ad(workdir / "kang_query2.h5ad")
    bad.obs = bad.obs.drop(columns="donor")
    bad.write_h5ad(workdir / "kang_query_nodonor.h5ad")
    extra = write_config(workdir, {"queries": {"nodonor": {"reference": "ref6", "dataset": "kang_query_nodonor.h5ad"}}},
                         name="extra.yaml")
    proc = snakemake(workdir, "--cores", "2", "--configfile", str(workdir / "config" / "config.yaml"), str(extra),
                     check=False)
    assert proc.returncode != 0
    log = (workdir / "results" / "queries" / "nodonor" / "logs" / "map_query.log").read_text()
    assert "obs['donor']" in log and "batch key" in log
    assert not (workdir / "results" / "queries" / "nodonor" / "embedding.h5ad").exists()
