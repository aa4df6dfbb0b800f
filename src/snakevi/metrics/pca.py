"""The unintegrated baseline: PCA of log-normalised counts (what PCR comparison compares against)."""

from __future__ import annotations

import numpy as np

from snakevi.metrics._inputs import MetricInputError


def log_normalize(counts, target_sum: float = 1e4):
    """``log1p(counts / total * target_sum)`` per cell, as scanpy's normalize_total + log1p.

    Sparse input stays sparse (CSR, float64); cells without counts stay all zero.
    """
    from scipy import sparse

    X = sparse.csr_matrix(counts, dtype=np.float64, copy=True) if sparse.issparse(counts) \
        else sparse.csr_matrix(np.asarray(counts, dtype=np.float64))
    if X.data.size and (not np.isfinite(X.data).all() or X.data.min() < 0):
        raise MetricInputError("counts must be finite and non-negative (raw counts); found negative or non-finite "
                               "values. Pass the raw count matrix, not a normalised or scaled one.")
    totals = np.asarray(X.sum(axis=1)).ravel()
    scale = np.divide(target_sum, totals, out=np.zeros_like(totals), where=totals > 0)
    X.data *= np.repeat(scale, np.diff(X.indptr))
    np.log1p(X.data, out=X.data)
    return X


def pca_baseline(counts_csr, n_comps: int = 50, seed: int = 0) -> np.ndarray:
    """PCA of log-normalised counts: the "unintegrated" embedding of a dataset.

    Counts are scaled to 10,000 per cell and ``log1p``-transformed; the top ``n_comps``
    principal components of all genes are found by a truncated SVD of the implicitly centred
    sparse matrix (ARPACK, start vector drawn from ``seed``, so the result is deterministic).
    Component signs are fixed so that each component's largest gene loading is positive.

    Parameters
    ----------
    counts_csr
        (n_cells, n_genes) raw counts, scipy sparse (CSR preferred) or dense.
    n_comps
        Components to keep; capped at ``min(n_cells, n_genes) - 1``.
    seed
        Seed of the solver's start vector.

    Returns
    -------
    numpy.ndarray
        (n_cells, n_comps) float64 principal component scores, largest variance first.
    """
    from scipy.sparse.linalg import LinearOperator, svds

    X = log_normalize(counts_csr)
    n, g = X.shape
    k = min(int(n_comps), min(n, g) - 1)
    if k < 1:
        raise MetricInputError(f"pca_baseline needs at least 2 cells and 2 genes; got {n} x {g}.")
    mu = np.asarray(X.mean(axis=0)).ravel()
    XT = X.T.tocsr()

    def matvec(v):
        v = np.asarray(v).reshape(g, -1)
        return X @ v - np.ones((n, 1)) * (mu @ v)

    def rmatvec(u):
        u = np.asarray(u).reshape(n, -1)
        return XT @ u - mu[:, None] * u.sum(axis=0)

    op = LinearOperator((n, g), matvec=matvec, rmatvec=rmatvec, matmat=matvec, rmatmat=rmatvec, dtype=np.float64)
    v0 = np.random.default_rng(seed).uniform(-1.0, 1.0, size=min(n, g))
    u, s, vt = svds(op, k=k, v0=v0, solver="arpack")
    order = np.argsort(-s, kind="stable")
    u, s, vt = u[:, order], s[order], vt[order]
    signs = np.sign(vt[np.arange(k), np.abs(vt).argmax(axis=1)])
    signs[signs == 0] = 1.0
    return u * (s * signs)
