"""LISI, local inverse Simpson's index (Korsunsky et al. 2019): iLISI (batch) and cLISI (bio).

Each cell's kNN distances are turned into Gaussian-like neighbour weights whose entropy equals
``log(perplexity)`` (bisection on the precision ``beta``, as in t-SNE); the LISI of the cell is
``1 / sum_c p_c^2`` with ``p_c`` the weight of its neighbours in category ``c``: the effective
number of categories around it. As in scib-metrics: distances are plain Euclidean distances
(``exp(-beta * d)``), the cell itself is in its list but gets no weight, perplexity defaults to
``floor(k / 3)``, and the median over cells is scaled to [0, 1].
"""

from __future__ import annotations

import numpy as np

from snakevi.metrics._inputs import as_codes, as_embedding, warn_undefined
from snakevi.metrics._knn import Neighbors, exact_knn

_TOL = 1e-5
_MAX_TRIES = 50


def _neighbors(X, k: int) -> Neighbors:
    if isinstance(X, Neighbors):
        return X.subset(k)
    return exact_knn(as_embedding(X), k)


def _entropy_and_p(d: np.ndarray, mask: np.ndarray, beta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    P = np.where(mask, np.exp(-d * beta[:, None]), 0.0)
    sumP = P.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        H = np.where(sumP == 0, 0.0, np.log(sumP) + beta * (d * P).sum(axis=1) / sumP)
        P = np.where(sumP[:, None] == 0, 0.0, P / sumP[:, None])
    return H, P


def neighbor_probabilities(neighbors: Neighbors, perplexity: float | None = None) -> np.ndarray:
    """(n_cells, k) neighbour weights at the given perplexity (rows sum to 1; the cell itself 0).

    A row is all zeros when every weight underflows (no usable neighbour); its LISI is NaN.
    """
    d = neighbors.distances
    n, k = d.shape
    perplexity = np.floor(k / 3) if perplexity is None else float(perplexity)
    if perplexity <= 0:
        raise ValueError(f"perplexity must be positive; with k={k} neighbours the default floor(k/3) is 0: use k >= 3.")
    mask = neighbors.indices != np.arange(n)[:, None]
    target = np.log(perplexity)
    beta = np.ones(n)
    lo = np.full(n, -np.inf)
    hi = np.full(n, np.inf)
    H, P = _entropy_and_p(d, mask, beta)
    diff = H - target
    for _ in range(_MAX_TRIES):
        idx = np.flatnonzero(np.abs(diff) >= _TOL)
        if idx.size == 0:
            break
        up = diff[idx] > 0  # entropy too high: sharpen (larger beta)
        b = beta[idx]
        new_lo = np.where(up, b, lo[idx])
        new_hi = np.where(up, hi[idx], b)
        beta[idx] = np.where(
            up,
            np.where(np.isinf(hi[idx]), b * 2.0, (b + hi[idx]) / 2.0),
            np.where(np.isinf(lo[idx]), b / 2.0, (b + lo[idx]) / 2.0),
        )
        lo[idx], hi[idx] = new_lo, new_hi
        H_i, P_i = _entropy_and_p(d[idx], mask[idx], beta[idx])
        P[idx] = P_i
        diff[idx] = H_i - target
    return P


def lisi_from_probabilities(P: np.ndarray, neighbors: Neighbors, codes: np.ndarray) -> np.ndarray:
    """Per-cell LISI ``1 / sum_c p_c^2`` from neighbour weights ``P`` and category codes."""
    nb_codes = codes[neighbors.indices[:, : P.shape[1]]]
    simpson = np.zeros(P.shape[0])
    for c in range(int(codes.max()) + 1):
        simpson += np.where(nb_codes == c, P, 0.0).sum(axis=1) ** 2
    with np.errstate(divide="ignore"):
        return np.where(simpson > 0, 1.0 / simpson, np.nan)


def lisi_knn(X, labels, *, k: int = 90, perplexity: float | None = None) -> np.ndarray:
    """LISI of every cell with respect to ``labels``.

    Parameters
    ----------
    X
        (n_cells, n_dims) embedding, or :class:`~snakevi.metrics.Neighbors` computed beforehand
        (then its first ``k`` neighbours are used).
    labels
        (n_cells,) categories (integers or strings).
    k
        Neighbours per cell, the cell itself included (scib-metrics' graph for LISI has 90).
    perplexity
        Effective neighbourhood size; ``None``: ``floor(k / 3)``.

    Returns
    -------
    numpy.ndarray
        (n_cells,) effective number of categories around each cell, in [1, n_categories]
        (NaN for a cell with no usable neighbour).
    """
    nb = _neighbors(X, k)
    codes, _ = as_codes(labels, "labels", nb.n_cells)
    return lisi_from_probabilities(neighbor_probabilities(nb, perplexity), nb, codes)


def ilisi_from_lisi(lisi: np.ndarray, n_batches: int, scale: bool = True) -> float:
    if n_batches < 2:
        return warn_undefined("iLISI", "only one batch")
    value = float(np.nanmedian(lisi))
    return (value - 1.0) / (n_batches - 1.0) if scale else value


def clisi_from_lisi(lisi: np.ndarray, n_labels: int, scale: bool = True) -> float:
    if n_labels < 2:
        return warn_undefined("cLISI", "only one label")
    value = float(np.nanmedian(lisi))
    return (n_labels - value) / (n_labels - 1.0) if scale else value


def ilisi_knn(X, batch, *, k: int = 90, perplexity: float | None = None, scale: bool = True) -> float:
    """iLISI: median effective number of batches around a cell (batch correction).

    Scaled as ``(median - 1) / (n_batches - 1)``: 1 when the typical neighbourhood holds all
    batches with equal weight, 0 when it holds one batch. See :func:`lisi_knn` for ``X``,
    ``k`` and ``perplexity``.

    Returns
    -------
    float
        Higher means better mixing; NaN (with a warning) for one batch.
    """
    nb = _neighbors(X, k)
    codes, _ = as_codes(batch, "batch", nb.n_cells)
    lisi = lisi_from_probabilities(neighbor_probabilities(nb, perplexity), nb, codes)
    return ilisi_from_lisi(lisi, int(codes.max()) + 1, scale)


def clisi_knn(X, labels, *, k: int = 90, perplexity: float | None = None, scale: bool = True) -> float:
    """cLISI: median effective number of labels around a cell (bio conservation).

    Scaled as ``(n_labels - median) / (n_labels - 1)``: 1 when every neighbourhood holds one
    label. See :func:`lisi_knn` for ``X``, ``k`` and ``perplexity``.

    Returns
    -------
    float
        Higher means labels stay apart; NaN (with a warning) for one label.
    """
    nb = _neighbors(X, k)
    codes, _ = as_codes(labels, "labels", nb.n_cells)
    lisi = lisi_from_probabilities(neighbor_probabilities(nb, perplexity), nb, codes)
    return clisi_from_lisi(lisi, int(codes.max()) + 1, scale)
