"""CellData: encoding with the registry, gather for every storage, library-size statistics."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from snakevi.data import CellData, RegistrationError, library_size_stats, setup_anndata, transfer_setup

FULL = dict(
    batch_key="batch",
    labels_key="cell_type",
    size_factor_key="sf",
    categorical_covariate_keys=["site", "batch"],
    continuous_covariate_keys=["age", "sf"],
)
IDX = np.array([7, 0, 11, 3, 3])


def _gathered(adata, **kwargs):
    setup_anndata(adata, **{**FULL, **kwargs})
    return CellData.from_anndata(adata).gather(IDX)


def test_gather_keys_shapes_dtypes(adata):
    out = _gathered(adata)
    expect = {
        "X": ((5, 5), np.float32),
        "batch": ((5, 1), np.int64),
        "labels": ((5, 1), np.int64),
        "size_factor": ((5, 1), np.float32),
        "extra_categorical_covs": ((5, 2), np.int64),
        "extra_continuous_covs": ((5, 2), np.float32),
        "x_log_factorial": ((5, 1), np.float32),
    }
    assert {k: (v.shape, v.dtype) for k, v in out.items()} == expect


@pytest.mark.parametrize("layout", ["csr", "dense", "csr_chunked"])
def test_x_log_factorial_is_the_per_cell_sum_of_log_x_factorial(layout, monkeypatch):
    from scipy.special import gammaln

    from snakevi.data import celldata

    rng = np.random.default_rng(3)
    counts = rng.poisson(rng.gamma(0.5, 4.0, size=(40, 30))).astype(np.float32)
    counts[7] = 0  # an empty cell: log-factorial sum 0
    if layout == "csr_chunked":
        monkeypatch.setattr(celldata, "_LOG_FACTORIAL_CHUNK", 17)  # many chunks, some one row
    X = counts if layout == "dense" else sp.csr_matrix(counts)
    obs = {"batch": np.zeros((40, 1), np.int64), "labels": np.zeros((40, 1), np.int64)}
    out = CellData(X, obs, registry={}).gather(np.arange(40))
    np.testing.assert_allclose(out["x_log_factorial"][:, 0], gammaln(counts + 1.0).sum(axis=1), rtol=1e-6)
    assert out["x_log_factorial"][7, 0] == 0


def test_log_factorials_of_a_large_csr_need_bounded_temporary_memory():
    """The train job's peak memory on data larger than RAM includes these temporaries."""
    import tracemalloc

    from snakevi.data.celldata import count_log_factorials

    n_cells, per_cell = 6000, 1000  # 6 million stored values: 24 MB of float32 counts
    indptr = np.arange(0, (n_cells + 1) * per_cell, per_cell, dtype=np.int64)
    indices = np.tile(np.arange(per_cell, dtype=np.int32), n_cells)
    data = np.full(n_cells * per_cell, 3.0, dtype=np.float32)
    X = sp.csr_matrix((data, indices, indptr), shape=(n_cells, per_cell), copy=False)
    tracemalloc.start()
    try:
        out = count_log_factorials(X)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    np.testing.assert_allclose(out, per_cell * np.log(6.0), rtol=1e-6)
    # One chunk costs about 30 bytes per stored value; all 6 million at once would be ~180 MB.
    assert peak < 64 << 20, f"peak temporary memory {peak >> 20} MB"


def test_codes_follow_the_registry_mappings(adata):
    out = _gathered(adata)
    # batch b{i%3}; cell_type t{i%2}; site categories ["s1", "s0"], cell i has ("s1","s0")[i%2]
    np.testing.assert_array_equal(out["batch"][:, 0], IDX % 3)
    np.testing.assert_array_equal(out["labels"][:, 0], IDX % 2)
    np.testing.assert_array_equal(out["extra_categorical_covs"], np.stack([IDX % 2, IDX % 3], axis=1))
    np.testing.assert_allclose(out["extra_continuous_covs"][:, 0], adata.obs["age"].to_numpy()[IDX], rtol=1e-6)
    np.testing.assert_allclose(out["size_factor"][:, 0], adata.obs["sf"].to_numpy()[IDX], rtol=1e-6)


def test_dense_csr_csc_and_layer_give_identical_minibatches(new_adata):
    ref = _gathered(new_adata(fmt="dense"))
    for fmt in ("csr", "csc"):
        out = _gathered(new_adata(fmt=fmt))
        for key in ref:
            np.testing.assert_array_equal(out[key], ref[key], err_msg=f"{fmt}:{key}")
    layered = new_adata(fmt="dense")
    layered.layers["counts"] = sp.csc_matrix(layered.X)
    layered.X = np.zeros_like(layered.X) + 0.5  # X is not used (and would fail validation)
    out = _gathered(layered, layer="counts")
    for key in ref:
        np.testing.assert_array_equal(out[key], ref[key], err_msg=f"layer:{key}")


def test_csc_is_converted_to_csr_once(new_adata):
    adata = new_adata(fmt="csc")
    setup_anndata(adata)
    data = CellData.from_anndata(adata)
    assert isinstance(data.X, sp.csr_matrix)
    assert len(data) == 12 and data.n_vars == 5


def test_categories_are_recoded_by_value_for_new_data(adata):
    reg = setup_anndata(adata, batch_key="batch")
    query = adata.copy()
    query.obs["batch"] = query.obs["batch"].cat.reorder_categories(["b2", "b0", "b1"])
    data = CellData.from_anndata(query, transfer_setup(query, reg))
    np.testing.assert_array_equal(data.obs["batch"][:, 0], np.arange(12) % 3)


def test_unknown_category_with_foreign_registry_is_refused(adata):
    reg = setup_anndata(adata, batch_key="batch")
    query = adata.copy()
    query.obs["batch"] = query.obs["batch"].cat.rename_categories({"b1": "zz"})
    with pytest.raises(RegistrationError, match=r"'batch'.*4 cell.*'zz'.*transfer_setup"):
        CellData.from_anndata(query, reg)


def test_other_genes_are_refused(adata, new_adata):
    reg = setup_anndata(adata)
    other = new_adata(n_vars=4)
    with pytest.raises(RegistrationError, match="gene"):
        CellData.from_anndata(other, reg)


def test_library_size_stats_match_per_batch_log_totals(new_adata):
    adata = new_adata(fmt="csr")
    adata.obs["batch"] = adata.obs["batch"].cat.add_categories(["empty"])
    setup_anndata(adata, batch_key="batch")
    means, variances = library_size_stats(CellData.from_anndata(adata))
    assert means.shape == (1, 4) and means.dtype == np.float32 and variances.dtype == np.float32
    logs = np.log(np.asarray(adata.X.sum(axis=1)).ravel().astype(np.float64))
    for b in range(3):
        sel = logs[np.arange(12) % 3 == b]
        assert means[0, b] == pytest.approx(sel.mean(), rel=1e-6)
        assert variances[0, b] == pytest.approx(sel.var(), rel=1e-5)
    assert (means[0, 3], variances[0, 3]) == (0.0, 1.0)  # a batch without cells: placeholders
    dense_means, _ = library_size_stats(adata)  # a registered AnnData works too
    np.testing.assert_array_equal(dense_means, means)


def test_constructor_checks_shapes():
    with pytest.raises(ValueError, match="'batch'"):
        CellData(np.ones((3, 2)), {"labels": np.zeros((3, 1), np.int64)}, {})
    with pytest.raises(ValueError, match=r"shape \(2, 1\)"):
        CellData(np.ones((3, 2)), {"batch": np.zeros((2, 1), np.int64), "labels": np.zeros((3, 1), np.int64)}, {})
