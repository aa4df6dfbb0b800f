"""Seeded k-means (k-means++ initialisation, then Lloyd iterations) in numpy.

:func:`scib_kmeans` is scib-metrics 0.5.10's jax ``KMeans`` step for step (float32, greedy
k-means++ with ``2 + log(k)`` local trials per centre drawn with jax's own random numbers, one
initialisation, Lloyd updates, an emptied cluster's centre at the data mean), so that it ends
in the same local optimum and "KMeans NMI" equals scib-metrics'. :func:`kmeans` is a general
seeded k-means with numpy's generator and several initialisations.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from snakevi.metrics import _jax_random
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


def _sq_euclidean_f32(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """(len(A), len(B)) squared distances as scib-metrics' ``square(cdist(A, B))``: float32
    differences, summed, square-rooted and squared again (the rounding decides near-ties)."""
    out = np.empty((A.shape[0], B.shape[0]), dtype=np.float32)
    rows = max(1, (1 << 22) // max(1, B.shape[0] * A.shape[1]))
    for start in range(0, A.shape[0], rows):
        diff = A[start:start + rows, None, :] - B[None, :, :]
        out[start:start + rows] = np.square(np.sqrt(np.einsum("ijk,ijk->ij", diff, diff)))
    return out


def _scib_plus_plus(X: np.ndarray, n_clusters: int, key: np.ndarray) -> np.ndarray:
    """scib-metrics' ``_initialize_plus_plus``: greedy k-means++ with jax's draws."""
    n = X.shape[0]
    key, subkey = _jax_random.split(key)
    first = _jax_random.choice_without_replacement(subkey, n, 1)
    centroids = [X[first[0]]]
    min_dist_sq = _sq_euclidean_f32(X[first], X).ravel()
    n_trials = 2 + int(np.log(n_clusters))
    for _ in range(n_clusters - 1):
        prob = min_dist_sq / min_dist_sq.sum(dtype=np.float32)
        key, subkey = _jax_random.split(key)
        candidates = _jax_random.choice_without_replacement(subkey, n, n_trials, p=prob)
        d_cand = np.minimum(min_dist_sq[None, :], _sq_euclidean_f32(X[candidates], X))
        best = int(np.argmin(d_cand.sum(axis=1, dtype=np.float32)))
        min_dist_sq = d_cand[best]
        centroids.append(X[candidates[best]])
    return np.stack(centroids)


def scib_kmeans(X: np.ndarray, n_clusters: int, *, seed: int = 0, max_iter: int = 300,
                tol: float = 1e-4) -> KMeansResult:
    """scib-metrics 0.5.10's ``KMeans(n_clusters).fit(X)``, with the same random draws.

    Parameters
    ----------
    X
        (n_cells, n_dims) embedding; used in float32 as scib-metrics does.
    n_clusters
        Number of clusters, at most the number of rows.
    seed
        jax key seed (scib-metrics: 0, whatever the data).
    max_iter, tol
        scib-metrics' loop: at least ``max_iter`` Lloyd updates, then more while the inertia
        changes by more than ``tol`` x the mean per-dimension variance. A run whose assignment
        stops changing has reached its fixed point and stops there (the updates left would not
        change it).

    Returns
    -------
    KMeansResult
        Labels, centroids (in the data's coordinates), inertia and Lloyd updates made.
    """
    X = np.array(X, dtype=np.float32, order="C")
    n = X.shape[0]
    if not 1 <= n_clusters <= n:
        raise ValueError(f"n_clusters must be between 1 and the number of cells ({n}), got {n_clusters}.")
    tol_abs = float(np.mean(np.var(X, axis=0))) * tol
    mean = X.mean(axis=0)
    X -= mean  # scib-metrics centres too, "for numerical accuracy"
    key = _jax_random.split(_jax_random.prng_key(seed), 1)[0]  # its n_init = 1 keys
    centroids = _scib_plus_plus(X, n_clusters, key)
    labels = None
    new_inertia = old_inertia = np.inf
    n_iter = 0
    while n_iter < max_iter or abs(old_inertia - new_inertia) > tol_abs:
        dist = _sq_euclidean_f32(X, centroids)
        new_labels = dist.argmin(axis=1)
        if labels is not None and np.array_equal(new_labels, labels):
            break
        labels = new_labels
        counts = np.maximum(np.bincount(labels, minlength=n_clusters), 1).astype(np.float32)
        sums = np.zeros((n_clusters, X.shape[1]), dtype=np.float32)
        np.add.at(sums, labels, X)
        # An emptied cluster's sum is 0, so its centre lands on the (centred) data mean.
        centroids = sums / counts[:, None]
        old_inertia, new_inertia = new_inertia, float(dist.min(axis=1).sum(dtype=np.float32))
        n_iter += 1
    dist = _sq_euclidean_f32(X, centroids)
    return KMeansResult(dist.argmin(axis=1), centroids + mean, float(dist.min(axis=1).sum()), n_iter)
