"""Highly variable genes on raw counts, batch-aware, in the manner of scanpy's ``seurat_v3``.

Per batch (Stuart et al. 2019, as in ``scanpy.pp.highly_variable_genes(flavor="seurat_v3")``):

1. mean ``m_g`` and variance ``v_g`` of each gene's counts;
2. a local quadratic regression (loess: span 0.3, tricube weights) of ``log10 v`` on
   ``log10 m`` over the non-constant genes gives the expected standard deviation ``s_g``; like
   skmisc's default ``surface="interpolate"``, the fit is computed exactly at about 200
   anchor genes (half evenly spaced in rank, half in value) and interpolated linearly between;
3. counts are clipped at ``m_g + s_g * sqrt(N)`` and the variance of the standardised clipped
   counts ``(x - m_g) / s_g`` is the gene's normalised variance;
4. genes are ranked by normalised variance (0 = most variable).

Across batches: a gene's ``n_batches`` is the number of batches where its rank is below
``n_top_genes``, and its ``median_rank`` is the median of those ranks. Genes are ordered by
``n_batches`` (descending) then ``median_rank`` (ascending) — scanpy's ``seurat_v3_paper``
order — and the first ``n_top_genes`` are selected. Ties are broken by gene position, so the
selection is deterministic. Only numpy and scipy are used.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

#: Fraction of genes in each local regression, as scanpy's default ``span=0.3``.
LOESS_SPAN = 0.3


def _mean_var(X) -> tuple[np.ndarray, np.ndarray]:
    """Per-gene mean and unbiased variance of a cells x genes matrix (float64)."""
    n = X.shape[0]
    if sp.issparse(X):
        X = sp.csr_matrix(X, dtype=np.float64)  # float32 sums would lose digits on large counts
        mean = np.asarray(X.sum(axis=0)).ravel() / n
        sq = np.asarray(X.multiply(X).sum(axis=0)).ravel()
    else:
        X = np.asarray(X, dtype=np.float64)
        mean = X.mean(axis=0)
        sq = (X * X).sum(axis=0)
    var = (sq - n * mean**2) / max(n - 1, 1)
    return mean, np.maximum(var, 0.0)


def loess_quadratic(x: np.ndarray, y: np.ndarray, span: float = LOESS_SPAN, chunk: int = 64,
                    n_anchors: int | None = 200) -> np.ndarray:
    """Fitted values of a degree-2 loess of ``y`` on ``x`` (1-D) at every ``x``.

    Each fit uses the ``ceil(span * n)`` nearest neighbours in ``x`` with tricube weights
    ``(1 - (d / d_max)**3)**3``; the local quadratic is centred on the point, so the fitted
    value is the intercept. With ``n_anchors``, the fit is computed exactly at about that many
    points (half evenly spaced in rank, half in value, the extremes included) and linearly
    interpolated elsewhere;
    ``None`` computes it at every point.
    """
    n = x.size
    k = int(min(n, max(3, np.ceil(span * n))))
    order = np.argsort(x, kind="stable")
    xs, ys = x[order], y[order]
    # In 1-D the k nearest neighbours form a contiguous window of the sorted values; its start
    # is the one of the candidate windows [i-k+1, i] whose farthest member is closest.
    starts = np.empty(n, dtype=np.int64)
    lo = 0
    for i in range(n):
        lo = min(max(lo, i - k + 1), n - k)
        while lo + k < n and xs[lo + k] - xs[i] < xs[i] - xs[lo]:
            lo += 1
        starts[i] = lo
    if n_anchors is not None and n > n_anchors:
        # Half the anchors evenly in rank (dense where genes are), half evenly in value (so the
        # sparse tails, where the curve bends most, are covered too).
        by_rank = np.linspace(0, n - 1, n_anchors // 2).round().astype(np.int64)
        by_value = np.searchsorted(xs, np.linspace(xs[0], xs[-1], n_anchors - n_anchors // 2)).clip(0, n - 1)
        anchors = np.unique(np.concatenate([by_rank, by_value, [n - 1]]))
    else:
        anchors = np.arange(n)
    fitted = np.empty(anchors.size)
    offsets = np.arange(k)
    for a in range(0, anchors.size, chunk):
        pos = np.arange(a, min(a + chunk, anchors.size))
        rows = anchors[pos]
        idx = starts[rows, None] + offsets[None, :]
        dx = xs[idx] - xs[rows, None]
        dmax = np.abs(dx).max(axis=1, keepdims=True)
        dmax[dmax == 0] = 1.0
        w = np.clip(1 - (np.abs(dx) / (dmax * 1.0000001)) ** 3, 0, None) ** 3
        # Weighted normal equations of y ~ b0 + b1 dx + b2 dx^2, one 3x3 system per point.
        p = [w * dx**j for j in range(5)]
        s = [q.sum(axis=1) for q in p]
        A = np.stack([np.stack(s[0:3], -1), np.stack(s[1:4], -1), np.stack(s[2:5], -1)], axis=1)
        t = np.stack([(p[j] * ys[idx]).sum(axis=1) for j in range(3)], axis=-1)
        A = A + np.eye(3) * 1e-12 * (np.abs(A).max(axis=(1, 2), keepdims=True) + 1.0)
        fitted[pos] = np.linalg.solve(A, t[..., None])[:, 0, 0]
    out = np.empty(n)
    out[order] = fitted if anchors.size == n else np.interp(xs, xs[anchors], fitted)
    return out


def normalized_variance(X) -> np.ndarray:
    """Normalised (clipped, standardised) variance of each gene in one batch; ``(n_genes,)``."""
    n = X.shape[0]
    mean, var = _mean_var(X)
    out = np.zeros(mean.size)
    not_const = var > 0
    if n < 2 or not_const.sum() < 3:
        return out
    x, y = np.log10(mean[not_const]), np.log10(var[not_const])
    expected = np.zeros(mean.size)
    expected[not_const] = loess_quadratic(x, y)
    reg_std = np.sqrt(10.0**expected)
    clip = reg_std * np.sqrt(n) + mean
    if sp.issparse(X):
        X = sp.csr_matrix(X)
        vals = np.minimum(X.data.astype(np.float64), clip[X.indices])
        sum_c = np.bincount(X.indices, weights=vals, minlength=mean.size)
        sum_c2 = np.bincount(X.indices, weights=vals**2, minlength=mean.size)
    else:
        c = np.minimum(np.asarray(X, dtype=np.float64), clip[None, :])
        sum_c, sum_c2 = c.sum(axis=0), (c * c).sum(axis=0)
    norm = (n * mean**2 + sum_c2 - 2 * mean * sum_c) / ((n - 1) * reg_std**2)
    out[not_const] = norm[not_const]
    return out


def highly_variable_genes(X, n_top_genes: int, batches: np.ndarray | None = None) -> dict:
    """Select ``n_top_genes`` highly variable genes from raw counts (see the module docstring).

    Parameters
    ----------
    X
        Counts, cells x genes (dense or scipy sparse).
    n_top_genes
        Number of genes to select; at most ``X.shape[1]``.
    batches
        Per-cell batch codes (any hashable values); ``None`` treats all cells as one batch.
        Batches with fewer than 2 cells are skipped.

    Returns
    -------
    dict
        ``selected`` (sorted int positions of the chosen genes), ``n_batches`` and
        ``median_rank`` per gene (NaN where never in the top), ``n_batches_used``.
    """
    n_genes = X.shape[1]
    if not 0 < n_top_genes <= n_genes:
        raise ValueError(f"n_top_genes must be in [1, {n_genes}], got {n_top_genes}.")
    if sp.issparse(X):
        X = sp.csr_matrix(X)
    if batches is None:
        groups = [np.arange(X.shape[0])]
    else:
        _, codes = np.unique(np.asarray(batches), return_inverse=True)
        groups = [np.flatnonzero(codes == b) for b in range(codes.max() + 1)]
    groups = [g for g in groups if g.size >= 2]
    if not groups:
        raise ValueError("Highly variable gene selection needs a batch with at least 2 cells.")
    ranks = np.empty((len(groups), n_genes))
    for b, cells in enumerate(groups):
        nv = normalized_variance(X[cells])
        order = np.argsort(-nv, kind="stable")
        ranks[b, order] = np.arange(n_genes)
    in_top = ranks < n_top_genes
    n_batches = in_top.sum(axis=0)
    masked = np.where(in_top, ranks, np.nan)
    with np.errstate(all="ignore"):
        median_rank = np.full(n_genes, np.nan)
        some = n_batches > 0
        median_rank[some] = np.nanmedian(masked[:, some], axis=0)
    key_rank = np.where(np.isnan(median_rank), np.inf, median_rank)
    # lexsort: last key is primary -> n_batches descending, then median rank, then position.
    order = np.lexsort((np.arange(n_genes), key_rank, -n_batches))
    selected = np.sort(order[:n_top_genes])
    return {
        "selected": selected,
        "n_batches": n_batches,
        "median_rank": median_rank,
        "n_batches_used": len(groups),
    }
