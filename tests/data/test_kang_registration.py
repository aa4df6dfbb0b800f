"""Registration of the real Kang PBMC data (../shared/data) and a minibatch from it."""

from __future__ import annotations

import anndata
import numpy as np
import scipy.sparse as sp

from snakevi.data import CellData, library_size_stats, setup_anndata


def test_kang_registers_and_gathers(kang_path):
    adata = anndata.read_h5ad(kang_path)
    reg = setup_anndata(adata, batch_key="donor", labels_key="cell_type")
    s = reg["summary"]
    assert (s["n_obs"], s["n_vars"], s["n_batch"], s["n_labels"]) == (12261, 1287, 8, 8)
    assert "CD14+ Monocytes" in reg["fields"]["labels"]["categorical_mapping"]
    v = reg["validation"]
    assert v["storage_format"] == "csr" and v["n_cells_zero_counts"] == 0
    assert v["total_counts"] == float(adata.X.sum(dtype=np.float64))

    data = CellData.from_anndata(adata)
    idx = np.array([0, 100, 12260])
    batch = data.gather(idx)
    np.testing.assert_array_equal(batch["X"], adata.X[idx].toarray())
    codes = adata.obs["donor"].astype("category").cat.codes.to_numpy()[idx]
    np.testing.assert_array_equal(batch["batch"][:, 0], codes)
    means, _ = library_size_stats(data)
    assert means.shape == (1, 8) and np.all(means > 5)
    assert isinstance(data.X, sp.csr_matrix)
