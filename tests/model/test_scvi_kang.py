"""SCVI on real data: Kang PBMC (8 donors) for a few seeded epochs."""

from __future__ import annotations

import anndata
import numpy as np
import pytest

from snakevi.model import SCVI

pytestmark = pytest.mark.slow


def test_kang_trains_and_round_trips(kang_path, tmp_path):
    adata = anndata.read_h5ad(kang_path)
    SCVI.setup_anndata(adata, batch_key="donor")
    model = SCVI(adata, seed=0)
    model.train(max_epochs=4, enable_progress_bar=False, check_val_every_n_epoch=1)

    elbo = model.history["elbo_validation"].to_numpy()
    assert np.all(np.diff(elbo) < 0), f"elbo_validation should decrease every epoch, got {elbo}"
    assert model.summary["n_batch"] == 8

    model.save(tmp_path / "kang")
    reloaded = SCVI.load(tmp_path / "kang", anndata.read_h5ad(kang_path))
    np.testing.assert_array_equal(reloaded.get_latent_representation(), model.get_latent_representation())
