"""UMAP connectivities: the calibration umap-learn defines, symmetry and the fuzzy union."""

import numpy as np

from snakevi.metrics import exact_knn
from snakevi.metrics._umap_graph import smooth_knn_dist, umap_connectivities


def test_bandwidth_calibrates_to_log2_k():
    X = np.random.default_rng(1).normal(size=(200, 3))
    nb = exact_knn(X, 15)
    sigma, rho = smooth_knn_dist(nb.distances, 15.0)
    np.testing.assert_allclose(rho, nb.distances[:, 1])  # distance to the nearest other cell
    weights = np.exp(-np.maximum(nb.distances[:, 1:] - rho[:, None], 0) / sigma[:, None])
    np.testing.assert_allclose(weights.sum(axis=1), np.log2(15), atol=1e-4)


def test_graph_is_symmetric_fuzzy_union_without_self_loops():
    X = np.random.default_rng(2).normal(size=(60, 2))
    nb = exact_knn(X, 6)
    G = umap_connectivities(nb).toarray()
    np.testing.assert_allclose(G, G.T)
    assert (np.diag(G) == 0).all() and G.max() <= 1.0 and G.min() >= 0.0
    # every cell is fully connected (weight 1) to its nearest neighbour
    assert np.allclose(G[np.arange(60), nb.indices[:, 1]], 1.0)
    # fuzzy union of two directed weights a, b is a + b - ab
    sigma, rho = smooth_knn_dist(nb.distances, 6.0)
    A = np.zeros((60, 60))
    for i in range(60):
        for j, d in zip(nb.indices[i, 1:], nb.distances[i, 1:]):
            A[i, j] = np.exp(-max(d - rho[i], 0) / sigma[i])
    np.testing.assert_allclose(G, A + A.T - A * A.T, atol=1e-12)
