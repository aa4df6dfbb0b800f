"""Highly variable gene selection: scanpy's flavours on small planted data (tests/data/test_hvg_scanpy.py: real data)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from snakevi.data.hvg import highly_variable_genes, seurat_v3_normalized_variance


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
    np.testing.assert_allclose(seurat_v3_normalized_variance(X), seurat_v3_normalized_variance(sp.csr_matrix(X)),
                               rtol=1e-10)


def test_seurat_v3_paper_puts_genes_variable_in_every_batch_first():
    rng = np.random.default_rng(2)
    n_genes = 100
    means = np.exp(rng.uniform(0.5, 2.5, n_genes))
    theta_a = np.full(n_genes, np.inf)
    theta_b = np.full(n_genes, np.inf)
    theta_a[:10] = theta_b[:10] = 0.5  # variable in both batches
    theta_a[10:15] = 0.2  # more variable, but only in batch a
    X = np.vstack([_counts(rng, 300, means, theta_a), _counts(rng, 300, means, theta_b)])
    batches = np.repeat(["a", "b"], 300)
    res = highly_variable_genes(X, 15, batches, flavor="seurat_v3_paper")
    # Genes 0-9 are highly variable in both batches, 10-14 only in batch a: 0-9 lead the
    # selection (n_batches first), 10-14 fill it (best median rank among the one-batch genes).
    assert res["n_batches_used"] == 2
    assert (res["n_batches"][:10] == 2).all()
    assert (res["n_batches"][10:] <= 1).all()
    assert set(res["selected"]) == set(range(15))


def test_n_top_genes_out_of_range_and_unknown_flavours_are_refused():
    with pytest.raises(ValueError, match="n_top_genes"):
        highly_variable_genes(np.ones((5, 4)), 5)
    with pytest.raises(ValueError, match="flavor must be one of seurat_v3, seurat_v3_paper, cell_ranger, seurat"):
        highly_variable_genes(np.ones((5, 4)), 2, flavor="pearson_residuals")


@pytest.mark.parametrize("flavor", ["cell_ranger", "seurat"])
def test_dispersion_flavours_find_planted_genes_with_and_without_batches(flavor):
    rng = np.random.default_rng(4)
    means = np.exp(rng.uniform(0, 3, 300))
    theta = np.full(300, np.inf)
    theta[::15] = 0.3
    X = sp.csr_matrix(_counts(rng, 400, means, theta))
    for batches in (None, np.repeat(["a", "b"], 200)):
        chosen = highly_variable_genes(X, 20, batches, flavor=flavor)["selected"]
        assert len(set(chosen) & set(range(0, 300, 15))) >= 15
