"""The command and the steps take the library's defaults: changing one is one edit in the library.

Each test changes a default where the library keeps it (a step's signature, the query training
defaults) and runs the step without that option: the new value must be what it uses.
"""

from __future__ import annotations

import json

import pandas as pd

from snakevi.cli import main


def test_prepare_without_batch_size_uses_the_steps_default(tiny_h5ad, tmp_path, monkeypatch):
    from snakevi.steps.prepare import prepare

    assert main(["register", "--input", str(tiny_h5ad), "--output", str(tmp_path / "r.json")]) == 0
    monkeypatch.setitem(prepare.__kwdefaults__, "batch_size", 48)
    monkeypatch.setitem(prepare.__kwdefaults__, "seed", 7)
    assert main(["prepare", "--input", str(tiny_h5ad), "--registry", str(tmp_path / "r.json"),
                 "--output", str(tmp_path / "p")]) == 0
    spec = json.loads((tmp_path / "p" / "loader.json").read_text())
    assert spec["loader"]["batch_size"] == 48 and spec["split_params"]["seed"] == 7


def test_map_query_without_train_params_uses_the_query_training_defaults(tmp_path, monkeypatch):
    from snakevi.data import simulate
    from snakevi.model import SCVI
    from snakevi.model.arches import QUERY_TRAIN_DEFAULTS

    ref = simulate(n_cells=120, n_genes=20, n_batches=2, seed=0)
    SCVI.setup_anndata(ref, batch_key="batch")
    SCVI(ref, n_hidden=8, n_latent=2).train(max_epochs=1, batch_size=64, enable_progress_bar=False).save(
        tmp_path / "ref")
    query = simulate(n_cells=60, n_genes=20, n_batches=1, seed=1)
    query.obs["batch"] = "lab_q"
    query.write_h5ad(tmp_path / "q.h5ad")
    monkeypatch.setitem(QUERY_TRAIN_DEFAULTS, "max_epochs", 2)
    assert main(["map-query", "--reference", str(tmp_path / "ref"), "--input", str(tmp_path / "q.h5ad"),
                 "--model", str(tmp_path / "qm"), "--history", str(tmp_path / "h.csv"),
                 "--output", str(tmp_path / "e.h5ad"), "--accelerator", "cpu"]) == 0
    assert len(pd.read_csv(tmp_path / "h.csv")) == 2
