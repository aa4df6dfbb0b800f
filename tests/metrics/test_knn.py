"""Exact kNN: same neighbours as a direct distance matrix, the cell itself first, sliceable."""

import numpy as np
from scipy.spatial.distance import cdist

from snakevi.metrics import Neighbors, exact_knn
from snakevi.metrics import _knn


def test_matches_a_full_distance_matrix(monkeypatch):
    X = np.random.default_rng(0).normal(size=(120, 4))
    monkeypatch.setattr(_knn, "_BLOCK_ENTRIES", 500)  # many small row blocks
    nb = exact_knn(X, 7)
    D = cdist(X, X)
    np.testing.assert_array_equal(nb.indices, np.argsort(D, axis=1, kind="stable")[:, :7])
    np.testing.assert_allclose(nb.distances, np.sort(D, axis=1)[:, :7], atol=1e-12)


def test_self_first_even_among_duplicates():
    X = np.zeros((5, 2))  # all cells on one point
    nb = exact_knn(X, 3)
    np.testing.assert_array_equal(nb.indices[:, 0], np.arange(5))
    assert (nb.distances == 0).all()


def test_k_is_capped_and_subset_slices():
    X = np.arange(8, dtype=float)[:, None]
    nb = exact_knn(X, 50)
    assert nb.k == 8
    sub = nb.subset(3)
    assert isinstance(sub, Neighbors) and sub.k == 3
    np.testing.assert_array_equal(sub.indices[0], [0, 1, 2])
    np.testing.assert_allclose(sub.distances[7], [0, 1, 2])
    graph = sub.distance_graph()
    assert graph.shape == (8, 8) and graph[7, 5] == 2
