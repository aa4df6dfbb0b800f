"""KMeans NMI and ARI: do k-means clusters of the embedding recover the labels? (bio conservation)."""

from __future__ import annotations

import numpy as np

from snakevi.metrics._inputs import as_codes, as_embedding, check_same_cells, warn_undefined
from snakevi.metrics.kmeans import scib_kmeans


def _contingency(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = np.unique(a, return_inverse=True)[1]
    b = np.unique(b, return_inverse=True)[1]
    n_b = int(b.max()) + 1
    return np.bincount(a * n_b + b, minlength=(int(a.max()) + 1) * n_b).reshape(-1, n_b).astype(np.float64)


def _entropy(counts: np.ndarray) -> float:
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())


def nmi(labels_true, labels_pred) -> float:
    """Normalized mutual information with the arithmetic-mean normalisation (scikit-learn's default).

    ``MI / ((H(true) + H(pred)) / 2)``, natural logarithms; 1 when both put all cells in one group.
    """
    a, _ = as_codes(labels_true, "labels_true")
    b, _ = as_codes(labels_pred, "labels_pred")
    check_same_cells(len(a), len(b), "labels_true", "labels_pred")
    C = _contingency(a, b)
    if C.shape[0] == C.shape[1] == 1:
        return 1.0
    if C.shape[0] == 1 or C.shape[1] == 1:
        return 0.0
    n = C.sum()
    pi, pj = C.sum(axis=1), C.sum(axis=0)
    nz = C > 0
    outer = np.outer(pi, pj)[nz]
    mi = float(np.clip((C[nz] / n * (np.log(C[nz]) - np.log(outer) + np.log(n))).sum(), 0.0, None))
    if mi == 0.0:
        return 0.0
    return mi / ((_entropy(pi) + _entropy(pj)) / 2.0)


def ari(labels_true, labels_pred) -> float:
    """Adjusted Rand index (Hubert & Arabie), as scikit-learn's ``adjusted_rand_score``."""
    a, _ = as_codes(labels_true, "labels_true")
    b, _ = as_codes(labels_pred, "labels_pred")
    check_same_cells(len(a), len(b), "labels_true", "labels_pred")
    C = _contingency(a, b).astype(np.int64)
    n = int(C.sum())
    # Pair counts as Python ints: n^2 overflows nothing, whatever the number of cells.
    sum_sq = int((C.astype(object) ** 2).sum())
    n_c, n_k = C.sum(axis=1).astype(object), C.sum(axis=0).astype(object)
    tp = sum_sq - n
    fp = int((C.astype(object) @ n_k).sum()) - sum_sq
    fn = int((C.T.astype(object) @ n_c).sum()) - sum_sq
    tn = n * n - fp - fn - sum_sq
    if fn == 0 and fp == 0:
        return 1.0
    return 2.0 * (tp * tn - fn * fp) / ((tp + fn) * (fn + tn) + (tp + fp) * (fp + tn))


def nmi_ari_cluster_labels_kmeans(X, labels, *, seed: int = 0) -> dict[str, float]:
    """KMeans NMI and ARI: k-means with k = number of labels, compared with the labels.

    scib-metrics 0.5.10's ``nmi_ari_cluster_labels_kmeans``, number for number: its k-means
    (:func:`~snakevi.metrics.kmeans.scib_kmeans`: one k-means++ initialisation from jax's
    ``PRNGKey(0)`` draws, Lloyd updates in float32) gives the same clusters, then NMI
    (arithmetic normalisation) and ARI between the clusters and the labels. A single
    initialisation's local optimum moves ARI by up to 0.3 between key seeds on real data
    (Kang, CellBench): the score is scib-metrics' number, not the best clustering there is.
    scib (the original package) used Louvain clusters at the best resolution instead.

    Parameters
    ----------
    X
        (n_cells, n_dims) embedding.
    labels
        (n_cells,) cell-type labels (integers or strings).
    seed
        Seed of the jax key of the k-means++ draws (scib-metrics: always 0).

    Returns
    -------
    dict
        ``{"nmi": float, "ari": float}``, both 1 for clusters equal to the labels; NaN (with a
        warning) when there is only one label.
    """
    X = as_embedding(X)
    codes, _ = as_codes(labels, "labels", X.shape[0])
    n_labels = int(codes.max()) + 1
    if n_labels == 1:
        value = warn_undefined("KMeans NMI/ARI", "only one label")
        return {"nmi": value, "ari": value}
    clusters = scib_kmeans(X, n_labels, seed=seed).labels
    return {"nmi": nmi(codes, clusters), "ari": ari(codes, clusters)}
