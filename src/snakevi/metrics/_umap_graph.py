"""UMAP connectivities (fuzzy simplicial set) from kNN lists, in numpy.

scib-metrics' ``NeighborsResults.knn_graph_connectivities`` calls umap-learn's
``fuzzy_simplicial_set`` (the graph scanpy's ``pp.neighbors`` builds); kBET per label works on
it. This is the same computation: per cell a bandwidth ``sigma`` is found by bisection so that
``sum_j exp(-(d_j - rho) / sigma) = log2(k)`` over the neighbours other than itself, where
``rho`` is the distance to the nearest other cell; edges get ``exp(-(d - rho) / sigma)`` (1 up
to ``rho``), and the directed graph ``A`` is symmetrised by the fuzzy union ``A + A^T - A*A^T``.
umap-learn runs this in float32; here it runs in float64.
"""

from __future__ import annotations

import numpy as np

from snakevi.metrics._knn import Neighbors

_SMOOTH_K_TOLERANCE = 1e-5
_MIN_K_DIST_SCALE = 1e-3
_FLOAT32_MAX = float(np.finfo(np.float32).max)


def smooth_knn_dist(distances: np.ndarray, k: float, n_iter: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Per-cell ``(sigma, rho)`` as umap-learn's ``smooth_knn_dist`` with local_connectivity=1.

    ``distances`` is (n_cells, k) with the cell itself in column 0, which the sum skips.
    """
    n = distances.shape[0]
    target = np.log2(k)
    positive = np.where(distances > 0.0, distances, np.inf)
    rho = positive.min(axis=1)
    rho[~np.isfinite(rho)] = 0.0  # a cell whose neighbours all sit on it
    others = distances[:, 1:]
    lo = np.zeros(n)
    hi = np.full(n, _FLOAT32_MAX)
    mid = np.ones(n)
    active = np.ones(n, dtype=bool)
    for _ in range(n_iter):
        idx = np.flatnonzero(active)
        if idx.size == 0:
            break
        d = others[idx] - rho[idx, None]
        with np.errstate(over="ignore"):
            psum = np.where(d > 0, np.exp(-d / mid[idx, None]), 1.0).sum(axis=1)
        done = np.abs(psum - target) < _SMOOTH_K_TOLERANCE
        active[idx[done]] = False
        idx, psum = idx[~done], psum[~done]
        over = psum > target
        hi[idx[over]] = mid[idx[over]]
        mid[idx[over]] = (lo[idx[over]] + hi[idx[over]]) / 2.0
        under = idx[~over]
        lo[under] = mid[under]
        unbounded = hi[under] >= _FLOAT32_MAX
        mid[under[unbounded]] *= 2.0
        mid[under[~unbounded]] = (lo[under[~unbounded]] + hi[under[~unbounded]]) / 2.0
    sigma = mid
    floor = _MIN_K_DIST_SCALE * np.where(rho > 0.0, distances.mean(axis=1), distances.mean())
    sigma = np.maximum(sigma, floor)
    return sigma, rho


def umap_connectivities(neighbors: Neighbors):
    """Symmetric CSR matrix of UMAP connectivities from ``neighbors`` (itself first in each row)."""
    from scipy.sparse import coo_matrix

    idx, dist = neighbors.indices, neighbors.distances
    n, k = idx.shape
    sigma, rho = smooth_knn_dist(dist, float(k))
    excess = dist - rho[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        vals = np.where((excess <= 0.0) | (sigma[:, None] == 0.0), 1.0, np.exp(-excess / sigma[:, None]))
    rows = np.repeat(np.arange(n), k)
    vals[idx == np.arange(n)[:, None]] = 0.0  # no self loops
    A = coo_matrix((vals.ravel(), (rows, idx.ravel())), shape=(n, n)).tocsr()
    A.eliminate_zeros()
    At = A.T.tocsr()
    G = (A + At - A.multiply(At)).tocsr()
    G.eliminate_zeros()
    G.sort_indices()
    return G
