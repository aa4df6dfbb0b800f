"""Highly variable gene selection on counts (seurat_v3-style, batch-aware)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from snakevi.data.hvg import highly_variable_genes, loess_quadratic, normalized_variance


def test_loess_reproduces_a_quadratic_exactly():
    x = np.linspace(-2, 3, 400)
    y = 1.5 - 0.7 * x + 0.3 * x**2
    np.testing.assert_allclose(loess_quadratic(x, y, n_anchors=None), y, atol=1e-8)
    np.testing.assert_allclose(loess_quadratic(x, y), y, atol=1e-2)  # anchors + linear interpolation


def test_anchored_loess_is_close_to_the_full_fit():
    rng = np.random.default_rng(0)
    x = rng.normal(size=2000)
    y = np.sin(x) + 0.1 * rng.normal(size=2000)
    full = loess_quadratic(x, y, n_anchors=None)
    assert np.abs(loess_quadratic(x, y) - full).max() < 0.01


def _counts(rng, n_cells, means, theta):
    """NB counts, one column per gene: Poisson-Gamma with inverse dispersion theta (inf: Poisson)."""
    rate = np.where(np.isinf(theta), means, rng.gamma(np.where(np.isinf(theta), 1, theta),
                                                       means / np.where(np.isinf(theta), 1, theta),
                                                       size=(n_cells, means.size)))
    return rng.poisson(rate).astype(np.float32)


def test_overdispersed_genes_are_selected_dense_and_sparse_alike():
    rng = np.random.default_rng(1)
    n_genes = 200
    means = np.exp(rng.uniform(-1, 3, n_genes))
    theta = np.full(n_genes, np.inf)
    planted = np.arange(0, n_genes, 10)  # 20 genes far more variable than Poisson at their mean
    theta[planted] = 0.5
    X = _counts(rng, 500, means, theta)
    dense = highly_variable_genes(X, 20)
    sparse = highly_variable_genes(sp.csr_matrix(X), 20)
    np.testing.assert_array_equal(dense["selected"], sparse["selected"])
    assert len(set(dense["selected"]) & set(planted)) >= 18
    np.testing.assert_allclose(normalized_variance(X), normalized_variance(sp.csr_matrix(X)), rtol=1e-10)


def test_genes_variable_in_every_batch_come_first():
    rng = np.random.default_rng(2)
    n_genes = 100
    means = np.exp(rng.uniform(0.5, 2.5, n_genes))
    theta_a = np.full(n_genes, np.inf)
    theta_b = np.full(n_genes, np.inf)
    theta_a[:10] = theta_b[:10] = 0.5  # variable in both batches
    theta_a[10:15] = 0.2  # more variable, but only in batch a
    X = np.vstack([_counts(rng, 300, means, theta_a), _counts(rng, 300, means, theta_b)])
    batches = np.repeat(["a", "b"], 300)
    res = highly_variable_genes(X, 15, batches)
    # Genes 0-9 are highly variable in both batches, 10-14 only in batch a: 0-9 lead the
    # selection (n_batches first), 10-14 fill it (best median rank among the one-batch genes).
    assert res["n_batches_used"] == 2
    assert (res["n_batches"][:10] == 2).all()
    assert (res["n_batches"][10:] <= 1).all()
    assert set(res["selected"]) == set(range(15))


def test_n_top_genes_out_of_range_is_refused():
    with pytest.raises(ValueError, match="n_top_genes"):
        highly_variable_genes(np.ones((5, 4)), 5)
