"""Principal component regression (PCR) and PCR comparison (batch correction).

PCR is the share of an embedding's variance explained by the batch: each principal component
is regressed on the one-hot batch (centred, no intercept) and the R^2 values are averaged with
the components' variances as weights. With all components kept (scib-metrics' default) this is
the between-batch sum of squares over the total sum of squares.
"""

from __future__ import annotations

import warnings

import numpy as np

from snakevi.metrics._inputs import MetricInputError, as_codes, as_embedding, check_same_cells, warn_undefined


def principal_component_regression(X, covariate, *, categorical: bool = True, n_components: int | None = None) -> float:
    """Variance-weighted R^2 of the principal components of ``X`` regressed on ``covariate``.

    Parameters
    ----------
    X
        (n_cells, n_dims) embedding.
    covariate
        (n_cells,) batch (``categorical=True``: one-hot encoded) or a numeric covariate.
    categorical
        Treat ``covariate`` as categories. scib-metrics' function defaults to False; its
        Benchmarker passes True for the batch, which is the default here.
    n_components
        Principal components to use; ``None``: all (``min(n_cells, n_dims)``).

    Returns
    -------
    float
        In [0, 1]: 0 when the covariate explains none of the variance.
    """
    X = as_embedding(X)
    n = X.shape[0]
    if categorical:
        codes, _ = as_codes(covariate, "covariate", n)
        design = np.zeros((n, int(codes.max()) + 1))
        design[np.arange(n), codes] = 1.0
    else:
        design = np.asarray(covariate, dtype=np.float64)
        design = design[:, None] if design.ndim == 1 else design
        check_same_cells(design.shape[0], n, "covariate", "X")
        if not np.isfinite(design).all():
            raise MetricInputError("covariate has NaN or infinite values; a numeric covariate must be finite.")
    design = design - design.mean(axis=0)
    centred = X - X.mean(axis=0)
    _, s, vt = np.linalg.svd(centred, full_matrices=False)
    n_max = s.size
    if n_components is not None and not 1 <= n_components <= n_max:
        raise ValueError(f"n_components must be between 1 and min(n_cells, n_dims) = {n_max}, got {n_components}.")
    m = n_max if n_components is None else n_components
    pcs = centred @ vt[:m].T
    variance = s[:m] ** 2 / max(n - 1, 1)
    if variance.sum() <= 0:
        return 0.0  # a constant embedding carries no variance for the batch to explain
    coef, *_ = np.linalg.lstsq(design, pcs, rcond=None)
    rss = ((pcs - design @ coef) ** 2).sum(axis=0)
    tss = (pcs**2).sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        r2 = np.where(tss > 0, np.maximum(0.0, 1.0 - rss / tss), 0.0)
    return float(r2 @ variance / variance.sum())


def pcr_comparison(X_pre, X_post, covariate, *, scale: bool = True, categorical: bool = True,
                   n_components: int | None = None) -> float:
    """PCR comparison: how much of the batch's share of variance integration removed.

    ``(pcr_pre - pcr_post) / pcr_pre``, set to 0 (with a warning) when integration increased it,
    as in scib-metrics. scib-metrics' Benchmarker passes the batch as categorical (default here).

    Parameters
    ----------
    X_pre
        (n_cells, n_dims_pre) unintegrated embedding, e.g. :func:`~snakevi.metrics.pca_baseline`.
    X_post
        (n_cells, n_dims) integrated embedding.
    covariate
        (n_cells,) batch of each cell.
    scale
        Return the relative reduction (in [0, 1], higher is better); ``False``: ``pcr_post - pcr_pre``.
    categorical, n_components
        See :func:`principal_component_regression`.

    Returns
    -------
    float
        The comparison score; NaN (with a warning) for one batch or when the batch explains no
        variance before integration.
    """
    X_pre = as_embedding(X_pre, "X_pre (the pre-integration embedding)")
    X_post = as_embedding(X_post, "X_post (the integrated embedding)")
    check_same_cells(X_pre.shape[0], X_post.shape[0], "X_pre", "X_post")
    if categorical and as_codes(covariate, "covariate", X_pre.shape[0])[0].max() == 0:
        return warn_undefined("PCR comparison", "only one batch")
    pre = principal_component_regression(X_pre, covariate, categorical=categorical, n_components=n_components)
    post = principal_component_regression(X_post, covariate, categorical=categorical, n_components=n_components)
    if not scale:
        return post - pre
    if pre <= 0:
        return warn_undefined("PCR comparison", "the batch explains no variance of X_pre")
    score = (pre - post) / pre
    if score < 0:
        warnings.warn("PCR comparison is negative (the batch explains more variance after integration); "
                      "it is set to 0, as scib-metrics does.", UserWarning, stacklevel=2)
        score = 0.0
    return float(score)
