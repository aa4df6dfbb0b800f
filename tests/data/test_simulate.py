"""simulate: seeded, integer NB counts with batch and label columns."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from snakevi.data import setup_anndata, simulate


@pytest.fixture(scope="module")
def sim():
    # More cells than one generation block (2048), so block seeding is exercised.
    return simulate(n_cells=2100, n_genes=40, n_batches=3, n_groups=4, seed=5)


def test_same_seed_same_matrix_regardless_of_threads(sim):
    again = simulate(n_cells=2100, n_genes=40, n_batches=3, n_groups=4, seed=5, n_jobs=1)
    assert (sim.X != again.X).nnz == 0
    assert sim.obs.equals(again.obs)
    other = simulate(n_cells=2100, n_genes=40, n_batches=3, n_groups=4, seed=6)
    assert (sim.X != other.X).nnz > 0


def test_counts_are_csr_float32_integers(sim):
    X = sim.X
    assert isinstance(X, sp.csr_matrix) and X.dtype == np.float32
    assert X.has_sorted_indices
    np.testing.assert_array_equal(X.data, np.round(X.data))
    assert (X.data > 0).all()


def test_obs_and_names(sim):
    assert list(sim.obs["batch"].cat.categories) == ["batch0", "batch1", "batch2"]
    assert list(sim.obs["label"].cat.categories) == ["group0", "group1", "group2", "group3"]
    assert sim.obs_names[0] == "cell0" and sim.var_names[-1] == "gene39"
    assert sim.obs_names.is_unique and sim.var_names.is_unique
    assert set(sim.obs["batch"]) == {"batch0", "batch1", "batch2"}


def test_library_sizes_follow_the_log_normal(sim):
    log_totals = np.log(np.asarray(sim.X.sum(axis=1)).ravel())
    assert abs(log_totals.mean() - 8.0) < 0.05
    assert 0.2 < log_totals.std() < 0.45


def test_batch_effect_changes_gene_profiles():
    def batch_gap(effect):
        ad = simulate(n_cells=600, n_genes=30, n_batches=2, n_groups=1, seed=2, batch_effect=effect)
        x = ad.X.toarray()
        x = x / x.sum(1, keepdims=True)
        b = ad.obs["batch"].cat.codes.to_numpy()
        return np.abs(np.log(x[b == 0].mean(0) + 1e-6) - np.log(x[b == 1].mean(0) + 1e-6)).mean()

    assert batch_gap(0.0) < 0.1 < batch_gap(1.0)


def test_dense_option_and_per_gene_dispersion():
    sparse_ad = simulate(n_cells=50, n_genes=10, seed=1, dispersion=np.linspace(1, 10, 10))
    dense_ad = simulate(n_cells=50, n_genes=10, seed=1, dispersion=np.linspace(1, 10, 10), sparse=False)
    assert isinstance(dense_ad.X, np.ndarray)
    np.testing.assert_array_equal(dense_ad.X, sparse_ad.X.toarray())


def test_registers_cleanly(sim):
    reg = setup_anndata(sim, batch_key="batch", labels_key="label")
    assert reg["summary"]["n_batch"] == 3 and reg["summary"]["n_labels"] == 4


@pytest.mark.parametrize("kwargs", [dict(n_cells=0), dict(n_groups=0), dict(dispersion=0.0)])
def test_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        simulate(**kwargs)
