"""Exact k-nearest neighbours, computed once at the largest k and sliced for smaller ones.

scib-metrics uses approximate neighbours (pynndescent); these are exact (chunked brute force,
Euclidean), so the only difference is the approximation error of pynndescent, which is tiny
at these sizes. As in scib-metrics each cell's own index is its first neighbour (distance 0):
``k`` neighbours are the cell itself plus its ``k - 1`` nearest other cells.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Entries of one distance block (rows x cells) held at a time: ~32 MB of float64.
_BLOCK_ENTRIES = 4_000_000


@dataclass(frozen=True)
class Neighbors:
    """k-nearest-neighbour lists of every cell, itself first.

    Attributes
    ----------
    indices
        (n_cells, k) int64; row ``i`` lists ``i`` then its nearest other cells, nearest first.
    distances
        (n_cells, k) float64 Euclidean distances matching ``indices`` (column 0 is 0).
    """

    indices: np.ndarray
    distances: np.ndarray

    @property
    def n_cells(self) -> int:
        return self.indices.shape[0]

    @property
    def k(self) -> int:
        return self.indices.shape[1]

    def subset(self, k: int) -> Neighbors:
        """The first ``k`` neighbours of every cell (``k`` is capped at the number held)."""
        k = min(int(k), self.k)
        return Neighbors(self.indices[:, :k], self.distances[:, :k])

    def distance_graph(self):
        """The directed kNN graph as a CSR matrix: row ``i`` holds the distances to its k neighbours."""
        from scipy.sparse import csr_matrix

        n, k = self.indices.shape
        indptr = np.arange(0, n * k + 1, k)
        return csr_matrix((self.distances.ravel(), self.indices.ravel(), indptr), shape=(n, n))


def block_rows(n_cols: int) -> int:
    """How many rows of an (rows x n_cols) float64 block fit the memory budget (at least 1)."""
    return max(1, _BLOCK_ENTRIES // max(1, n_cols))


def sq_norms(X: np.ndarray) -> np.ndarray:
    return np.einsum("ij,ij->i", X, X)


def sq_distances(A: np.ndarray, B: np.ndarray, a_norms: np.ndarray, b_norms: np.ndarray) -> np.ndarray:
    """Squared Euclidean distances (len(A) x len(B)) through one matrix product, clipped at 0."""
    D = a_norms[:, None] + b_norms[None, :] - 2.0 * (A @ B.T)
    np.maximum(D, 0.0, out=D)
    return D


def exact_knn(X: np.ndarray, k: int) -> Neighbors:
    """Exact Euclidean k-nearest neighbours of every row of ``X``, the row itself first.

    Parameters
    ----------
    X
        (n_cells, n_dims) float64 coordinates.
    k
        Neighbours per cell, the cell itself included; capped at ``n_cells``.

    Returns
    -------
    Neighbors
        Neighbour lists sorted by distance (ties by index). Distances are recomputed from the
        coordinate differences, so duplicates are exactly 0 apart.
    """
    n = X.shape[0]
    k = min(int(k), n)
    norms = sq_norms(X)
    indices = np.empty((n, k), dtype=np.int64)
    rows = block_rows(n)
    for start in range(0, n, rows):
        stop = min(n, start + rows)
        D = sq_distances(X[start:stop], X, norms[start:stop], norms)
        local = np.arange(stop - start)
        # The cell itself must come first even among exact duplicates (scib-metrics' LISI and
        # UMAP connectivities recognise self by position/index).
        D[local, start + local] = -1.0
        if k < n:
            part = np.argpartition(D, k - 1, axis=1)[:, :k]
        else:
            part = np.broadcast_to(np.arange(n), (stop - start, n)).copy()
        d_part = np.take_along_axis(D, part, axis=1)
        order = np.lexsort((part, d_part), axis=1)  # by distance, then by index: deterministic
        indices[start:stop] = np.take_along_axis(part, order, axis=1)
    distances = np.empty((n, k))
    step = block_rows(k * X.shape[1])
    for start in range(0, n, step):
        d = X[indices[start:start + step]] - X[start:start + step, None, :]
        distances[start:start + step] = np.sqrt(np.einsum("ijk,ijk->ij", d, d))
    return Neighbors(indices, distances)
