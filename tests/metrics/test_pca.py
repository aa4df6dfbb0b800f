"""pca_baseline: log-normalisation by hand, and the same components as a dense SVD."""

import numpy as np
import pytest
from scipy import sparse

from snakevi.metrics import MetricInputError, log_normalize, pca_baseline


def counts(seed=0, n=80, g=30):
    rng = np.random.default_rng(seed)
    return sparse.csr_matrix(rng.poisson(rng.gamma(1.0, 2.0, size=(n, g))).astype(np.float32))


def test_log_normalize_by_hand():
    C = sparse.csr_matrix(np.array([[1.0, 3.0], [0.0, 0.0], [2.0, 0.0]]))
    L = log_normalize(C).toarray()
    np.testing.assert_allclose(L, [[np.log1p(2500), np.log1p(7500)], [0, 0], [np.log1p(1e4), 0]])


def test_matches_a_dense_svd_of_the_centred_log_counts():
    C = counts()
    L = log_normalize(C).toarray()
    centred = L - L.mean(axis=0)
    u, s, vt = np.linalg.svd(centred, full_matrices=False)
    got = pca_baseline(C, n_comps=5)
    want = u[:, :5] * s[:5]
    signs = np.sign(vt[np.arange(5), np.abs(vt[:5]).argmax(axis=1)])  # largest loading positive
    np.testing.assert_allclose(got, want * signs, atol=1e-8)


def test_deterministic_dense_input_and_capped_components():
    C = counts(1, n=20, g=6)
    a = pca_baseline(C, n_comps=50, seed=2)
    assert a.shape == (20, 5)  # capped at min(cells, genes) - 1
    np.testing.assert_array_equal(a, pca_baseline(C, n_comps=50, seed=2))
    np.testing.assert_allclose(pca_baseline(C.toarray(), n_comps=3), pca_baseline(C, n_comps=3), atol=1e-10)


def test_negative_counts_are_refused():
    with pytest.raises(MetricInputError, match="non-negative"):
        pca_baseline(np.array([[1.0, -1.0], [2.0, 3.0]]))
