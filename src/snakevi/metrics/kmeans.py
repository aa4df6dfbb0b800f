"""Seeded k-means (k-means++ initialisation, then Lloyd iterations) in numpy.

The same algorithm as scib-metrics' jax ``KMeans`` (greedy k-means++ with ``2 + log(k)`` local
trials per centre, one initialisation, Lloyd updates); the random draws differ (numpy vs jax
generators), so on data without a clear cluster structure the partitions can differ.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from snakevi.metrics._knn import block_rows, sq_distances, sq_norms


@dataclass(frozen=True)
class KMeansResult:
    """Outcome of :func:`kmeans`: ``labels`` (n_cells,), ``centroids`` (k, n_dims), ``inertia``, ``n_iter``."""

    labels: np.ndarray
    centroids: np.ndarray
    inertia: float
    n_iter: int


def _assign(X, x_norms, centroids) -> tuple[np.ndarray, np.ndarray]:
    """Nearest centroid of each row and the squared distance to it, in row blocks."""
    n = X.shape[0]
    labels = np.empty(n, dtype=np.int64)
    best = np.empty(n)
    c_norms = sq_norms(centroids)
    rows = block_rows(centroids.shape[0])
    for start in range(0, n, rows):
        D = sq_distances(X[start:start + rows], centroids, x_norms[start:start + rows], c_norms)
        labels[start:start + rows] = D.argmin(axis=1)
        best[start:start + rows] = D[np.arange(D.shape[0]), labels[start:start + rows]]
    return labels, best


def _plus_plus(X, x_norms, n_clusters: int, rng: np.random.Generator) -> np.ndarray:
    """Greedy k-means++: each new centre is the best of ``2 + int(log k)`` candidates drawn by D^2."""
    n = X.shape[0]
    n_trials = 2 + int(np.log(n_clusters))
    first = int(rng.integers(n))
    centres = [first]
    closest = sq_distances(X[first:first + 1], X, x_norms[first:first + 1], x_norms)[0]
    for _ in range(1, n_clusters):
        total = closest.sum()
        if total <= 0:  # fewer distinct points than clusters: take any unused point
            candidates = np.setdiff1d(np.arange(n), centres)[:1]
        else:
            candidates = rng.choice(n, size=min(n_trials, int((closest > 0).sum())), replace=False,
                                    p=closest / total)
        d_cand = np.minimum(closest[None, :], sq_distances(X[candidates], X, x_norms[candidates], x_norms))
        best = int(np.argmin(d_cand.sum(axis=1)))
        centres.append(int(candidates[best]))
        closest = d_cand[best]
    return X[centres].copy()


def kmeans(X: np.ndarray, n_clusters: int, *, seed: int = 0, n_init: int = 1, max_iter: int = 300) -> KMeansResult:
    """Cluster the rows of ``X`` into ``n_clusters`` groups (squared Euclidean loss).

    Parameters
    ----------
    X
        (n_cells, n_dims) float array.
    n_clusters
        Number of clusters, at most the number of rows.
    seed
        Seed of the k-means++ draws; the same seed gives the same partition.
    n_init
        Independent initialisations; the run with the lowest inertia is kept (scib-metrics: 1).
    max_iter
        Largest number of Lloyd iterations of one run; a run stops earlier once no cell changes cluster.

    Returns
    -------
    KMeansResult
        Labels, centroids, inertia (sum of squared distances to the centroids) and iterations.
    """
    X = np.asarray(X, dtype=np.float64)
    n = X.shape[0]
    if not 1 <= n_clusters <= n:
        raise ValueError(f"n_clusters must be between 1 and the number of cells ({n}), got {n_clusters}.")
    mean = X.mean(axis=0)
    X = X - mean  # centring keeps the |x|^2 + |c|^2 - 2xc distances accurate
    x_norms = sq_norms(X)
    rng = np.random.default_rng(seed)
    best: KMeansResult | None = None
    for _ in range(max(1, n_init)):
        centroids = _plus_plus(X, x_norms, n_clusters, rng)
        labels, dist = _assign(X, x_norms, centroids)
        n_iter = 0
        for n_iter in range(1, max_iter + 1):
            counts = np.bincount(labels, minlength=n_clusters)
            sums = np.column_stack([np.bincount(labels, weights=X[:, j], minlength=n_clusters)
                                    for j in range(X.shape[1])])
            empty = counts == 0
            centroids = sums / np.maximum(counts, 1)[:, None]
            if empty.any():  # an emptied cluster restarts on the cells worst served by their centroid
                far = np.argsort(-dist, kind="stable")[: int(empty.sum())]
                centroids[empty] = X[far]
            new_labels, dist = _assign(X, x_norms, centroids)
            if np.array_equal(new_labels, labels):
                break
            labels = new_labels
        inertia = float(dist.sum())
        if best is None or inertia < best.inertia:
            best = KMeansResult(labels, centroids + mean, inertia, n_iter)
    return best
