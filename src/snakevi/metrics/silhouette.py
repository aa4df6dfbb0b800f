"""Silhouette metrics: silhouette label (bio), BRAS and the classic silhouette batch (batch).

Distances are computed in row blocks against all cells and reduced at once to per-cluster
sums, so memory stays at one block (~32 MB), never an n x n matrix.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from snakevi.metrics._inputs import as_codes, as_embedding, warn_undefined
from snakevi.metrics._knn import block_rows, sq_distances, sq_norms

Metric = Literal["euclidean", "cosine"]
Between = Literal["nearest", "mean_other", "furthest"]


def _distance_block(A: np.ndarray, X: np.ndarray, a_norms, x_norms, metric: Metric, start: int) -> np.ndarray:
    if metric == "euclidean":
        D = np.sqrt(sq_distances(A, X, a_norms, x_norms))
    else:  # rows are unit vectors here (see silhouette_samples)
        D = np.clip(1.0 - A @ X.T, 0.0, 2.0)
    local = np.arange(A.shape[0])
    D[local, start + local] = 0.0  # rounding in the matrix product must not move a cell off itself
    return D


def silhouette_samples(
    X,
    labels,
    *,
    metric: Metric = "euclidean",
    between_cluster_distances: Between = "nearest",
) -> np.ndarray:
    """Silhouette width of every cell (scib-metrics' ``silhouette_samples``, as scikit-learn's).

    ``s = (b - a) / max(a, b)`` with ``a`` the mean distance to the other cells of its cluster
    and ``b`` the mean distance to the nearest other cluster (``"nearest"``, the classic
    silhouette), to all cells of the other clusters (``"mean_other"``, BRAS) or to the furthest
    other cluster (``"furthest"``). A cell alone in its cluster, or with a = b = 0, gets 0, and
    so does every cell when there is only one cluster (as in scib-metrics).

    Parameters
    ----------
    X
        (n_cells, n_dims) embedding.
    labels
        (n_cells,) cluster of each cell (integers or strings).
    metric
        ``"euclidean"`` or ``"cosine"`` (1 - cosine similarity; a zero vector is treated as
        orthogonal to everything, distance 1).
    between_cluster_distances
        How ``b`` is formed, see above.

    Returns
    -------
    numpy.ndarray
        (n_cells,) silhouette widths in [-1, 1].
    """
    X = as_embedding(X)
    codes, _ = as_codes(labels, "labels", X.shape[0])
    if metric not in ("euclidean", "cosine"):
        raise ValueError(f"metric must be 'euclidean' or 'cosine', got {metric!r}.")
    if between_cluster_distances not in ("nearest", "mean_other", "furthest"):
        raise ValueError("between_cluster_distances must be 'nearest', 'mean_other' or 'furthest', "
                         f"got {between_cluster_distances!r}.")
    return _silhouette_samples(X, codes, metric, between_cluster_distances)


def _silhouette_samples(X: np.ndarray, codes: np.ndarray, metric: Metric, between: Between) -> np.ndarray:
    n = X.shape[0]
    n_clusters = int(codes.max()) + 1
    counts = np.bincount(codes, minlength=n_clusters).astype(np.float64)
    if metric == "cosine":
        norms = np.linalg.norm(X, axis=1, keepdims=True)
        X = np.divide(X, norms, out=np.zeros_like(X), where=norms > 0)
    norms = sq_norms(X)
    onehot = np.zeros((n, n_clusters))
    onehot[np.arange(n), codes] = 1.0
    a = np.empty(n)
    b = np.empty(n)
    rows = block_rows(n)
    for start in range(0, n, rows):
        stop = min(n, start + rows)
        sums = _distance_block(X[start:stop], X, norms[start:stop], norms, metric, start) @ onehot
        own = codes[start:stop]
        local = np.arange(stop - start)
        intra = sums[local, own]
        with np.errstate(divide="ignore", invalid="ignore"):
            a[start:stop] = intra / (counts[own] - 1.0)
            if between == "mean_other":
                b[start:stop] = (sums.sum(axis=1) - intra) / (n - counts[own])
            else:
                means = sums / counts
                fill = np.inf if between == "nearest" else -np.inf
                means[local, own] = fill
                b[start:stop] = means.min(axis=1) if between == "nearest" else means.max(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        s = (b - a) / np.maximum(a, b)
    s[~np.isfinite(s)] = 0.0  # singleton clusters, a single cluster, or a = b = 0
    return s


def silhouette_label(X, labels, *, rescale: bool = True) -> float:
    """Silhouette label: mean silhouette width of the cell-type labels (bio conservation).

    Euclidean distances, nearest other cluster: scib-metrics' ``silhouette_label`` defaults.

    Parameters
    ----------
    X
        (n_cells, n_dims) embedding.
    labels
        (n_cells,) cell-type labels (integers or strings).
    rescale
        Map the mean width from [-1, 1] to [0, 1] as ``(asw + 1) / 2``.

    Returns
    -------
    float
        Higher means labels are better separated; NaN (with a warning) when there is only one label.
    """
    X = as_embedding(X)
    codes, _ = as_codes(labels, "labels", X.shape[0])
    if codes.max() == 0:
        return warn_undefined("Silhouette label", "only one label")
    return silhouette_label_from_samples(_silhouette_samples(X, codes, "euclidean", "nearest"), rescale)


def silhouette_label_from_samples(widths: np.ndarray, rescale: bool = True) -> float:
    asw = float(np.mean(widths))
    return (asw + 1.0) / 2.0 if rescale else asw


def silhouette_batch(
    X,
    labels,
    batch,
    *,
    rescale: bool = True,
    metric: Metric = "euclidean",
    between_cluster_distances: Between = "nearest",
) -> float:
    """Classic silhouette batch (ASW batch): how well batches mix within each cell-type label.

    For each label with at least two batches (and not one cell per batch), the silhouette of the
    batches among that label's cells is computed per cell, ``1 - |s|`` taken (``rescale``), and
    averaged per label; the score is the mean over labels. This is scib-metrics'
    ``silhouette_batch`` (Euclidean, nearest other batch). scib-metrics' Benchmarker now reports
    :func:`bras` instead, which is this with cosine distances and ``"mean_other"``.

    Parameters
    ----------
    X
        (n_cells, n_dims) embedding.
    labels, batch
        (n_cells,) cell-type labels and batches (integers or strings).
    rescale
        Report ``1 - |s|`` (1 = batches fully mixed) rather than ``|s|``.
    metric, between_cluster_distances
        See :func:`silhouette_samples`.

    Returns
    -------
    float
        Higher means better mixing; NaN (with a warning) when no label has two or more batches.
    """
    X = as_embedding(X)
    label_codes, _ = as_codes(labels, "labels", X.shape[0])
    batch_codes, _ = as_codes(batch, "batch", X.shape[0])
    name = "BRAS" if between_cluster_distances != "nearest" else "Silhouette batch"
    return _silhouette_batch(X, label_codes, batch_codes, rescale, metric, between_cluster_distances, name)


def _silhouette_batch(X, label_codes, batch_codes, rescale, metric, between, name) -> float:
    per_label = []
    for label in np.unique(label_codes):
        mask = label_codes == label
        sub_batches = np.unique(batch_codes[mask], return_inverse=True)[1]
        n_sub, n_batches = int(mask.sum()), int(sub_batches.max()) + 1
        if n_batches == 1 or n_batches == n_sub:  # no mixing to measure (scib-metrics skips these too)
            continue
        widths = np.abs(_silhouette_samples(X[mask], sub_batches, metric, between))
        per_label.append(np.mean(1.0 - widths if rescale else widths))
    if not per_label:
        return warn_undefined(name, "no label has cells from two or more batches")
    return float(np.mean(per_label))


def bras(X, labels, batch, *, metric: Metric = "cosine",
         between_cluster_distances: Literal["mean_other", "furthest"] = "mean_other") -> float:
    """BRAS, batch removal adapted silhouette: scib-metrics' default batch-silhouette metric.

    As :func:`silhouette_batch` (per label, ``1 - |s|`` of the batches, mean per label then over
    labels) but with cosine distances and ``b`` the mean distance to all cells of the other
    batches rather than to the nearest batch (Rautenstrauch & Ohler 2025), which keeps a
    nested batch effect from looking mixed. This is the "BRAS" column of scib-metrics >= 0.5.5.

    Parameters
    ----------
    X
        (n_cells, n_dims) embedding.
    labels, batch
        (n_cells,) cell-type labels and batches (integers or strings).
    metric
        ``"cosine"`` (default, as scib-metrics) or ``"euclidean"``.
    between_cluster_distances
        ``"mean_other"`` (default) or ``"furthest"``.

    Returns
    -------
    float
        In [0, 1], higher means better mixing; NaN (with a warning) when no label has two or more batches.
    """
    return silhouette_batch(X, labels, batch, rescale=True, metric=metric,
                            between_cluster_distances=between_cluster_distances)
