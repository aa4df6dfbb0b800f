"""export.scvi_tools and export.full_anndata in the workflow: a tiny scvi run end to end."""

from __future__ import annotations

import anndata
import numpy as np
import pytest
from wf_helpers import snakemake, write_config

TINY = {"simulate": {"n_cells": 300, "n_genes": 60, "n_batches": 2, "n_groups": 3}}
RUN = {"dataset": "resources/demo.h5ad", "setup": {"batch_key": "batch", "n_top_genes": 40},
       "model": {"n_latent": 4, "n_hidden": 16}, "train": {"max_epochs": 2},
       "report": {"metrics": False}, "resources": {"threads": 1}}


def test_a_run_exports_a_scvi_tools_model_and_the_full_anndata(tmp_path):
    export = {"scvi_tools": True, "full_anndata": True}
    write_config(tmp_path, {**TINY, "runs": {"ref": {**RUN, "export": export}}})
    snakemake(tmp_path, "--cores", "2", "-q")
    results = tmp_path / "results" / "ref"
    # scvi-tools' layout: one model.pt (beside Snakemake's timestamp of a directory output).
    assert {p.name for p in (results / "model_scvi_tools").iterdir()} - {".snakemake_timestamp"} == {"model.pt"}

    full = anndata.read_h5ad(results / "embedding.h5ad")
    source = anndata.read_h5ad(tmp_path / "resources" / "demo.h5ad")
    assert full.n_vars == 60 and list(full.var_names) == list(source.var_names)  # every gene, not the 40
    assert set(source.obs.columns) <= set(full.obs.columns)
    assert full.obsm["X_scVI"].shape == (300, 4)

    # The scvi-tools directory holds the run's model: loaded (restricted reader), it gives the latent.
    from snakevi.model import SCVI

    data = _model_genes(full, results)
    assert full.var["snakevi_model_gene"].sum() == 40
    assert list(full.var_names[full.var["snakevi_model_gene"].to_numpy()]) == list(data.var_names)
    model = SCVI.load(results / "model_scvi_tools", data)
    assert np.abs(model.get_latent_representation(data) - full.obsm["X_scVI"]).max() < 1e-5

    # A query onto that directory (reference_model) is the query onto the run (reference):
    # the same weights and registry, so with the same seed the same mapped latent.
    query = source.copy()
    query.obs["batch"] = "new_" + query.obs["batch"].astype(str)
    query.write_h5ad(tmp_path / "resources" / "query.h5ad")
    train = {"max_epochs": 2}
    queries = {"q_run": {"reference": "ref", "dataset": "resources/query.h5ad", "train": train},
               "q_dir": {"reference_model": "results/ref/model_scvi_tools", "dataset": "resources/query.h5ad",
                         "train": train}}
    write_config(tmp_path, {**TINY, "runs": {"ref": {**RUN, "export": export}}, "queries": queries})
    snakemake(tmp_path, "--cores", "2", "-q")
    mapped = {name: anndata.read_h5ad(tmp_path / "results" / "queries" / name / "embedding.h5ad")
              for name in queries}
    assert mapped["q_dir"].obsm["X_scVI"].shape == (300, 4)
    np.testing.assert_allclose(mapped["q_dir"].obsm["X_scVI"], mapped["q_run"].obsm["X_scVI"], atol=1e-6)


def _model_genes(full, results):
    import json

    genes = json.loads((results / "model" / "model.json").read_text())["registry"]["fields"]["X"]["column_names"]
    return full[:, genes].copy()


def test_scvi_tools_export_of_a_linear_scvi_run_is_refused_naming_the_key(tmp_path):
    run = {**RUN, "model_class": "linear_scvi", "export": {"scvi_tools": True}}
    write_config(tmp_path, {**TINY, "runs": {"lin": run}})
    out = snakemake(tmp_path, "--cores", "1", "-n", check=False)
    assert out.returncode != 0
    assert "Invalid config at runs.lin.export.scvi_tools" in out.stdout + out.stderr
    assert not (tmp_path / "results").exists()


@pytest.mark.parametrize("given", [{}, {"reference": "ref", "reference_model": "models/x"}])
def test_a_query_names_exactly_one_reference(tmp_path, given):
    queries = {"q": {"dataset": "resources/demo.h5ad", **given}}
    write_config(tmp_path, {**TINY, "runs": {"ref": RUN}, "queries": queries})
    out = snakemake(tmp_path, "--cores", "1", "-n", check=False)
    assert out.returncode != 0
    assert "Invalid config at queries.q: give one of reference" in out.stdout + out.stderr
