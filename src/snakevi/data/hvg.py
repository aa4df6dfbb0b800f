"""Highly variable genes, giving scanpy 1.11's gene set for the same arguments.

``flavor`` is scanpy's: ``"seurat_v3"`` (the default, as scanpy's for raw counts) and
``"seurat_v3_paper"`` work on the counts; ``"seurat"`` and ``"cell_ranger"`` on
log-normalized data, which :func:`scanpy_log_normalize` makes from the counts as a scanpy user
does (``normalize_total(target_sum=1e4)`` then ``log1p``, in float32). The steps and their
order follow ``scanpy.pp.highly_variable_genes`` so that ties and NaNs fall the same way;
``tests/data/test_hvg_scanpy.py`` holds every flavour, with and without batches, to gene lists
scanpy itself selected on ``../shared/data``.

seurat_v3 per batch (Stuart et al. 2019): a loess (span 0.3, degree 2; scikit-misc's, which
scanpy calls too) of log10 variance on log10 mean gives each gene's expected standard
deviation; counts are clipped at ``mean + sd * sqrt(n_cells)``; the variance of the clipped,
standardised counts ranks the genes. Across batches, ``seurat_v3`` orders genes by their median
rank among the batches where they are in the top ``n_top_genes``, then by the number of such
batches; ``seurat_v3_paper`` by that number first. The dispersion flavours live in
:mod:`snakevi.data.hvg_dispersion`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp

#: scanpy's flavours, the first its default for counts.
HVG_FLAVORS = ("seurat_v3", "seurat_v3_paper", "cell_ranger", "seurat")
#: Fraction of genes in each local regression of seurat_v3 (scanpy's ``span``).
LOESS_SPAN = 0.3


def mean_var(X) -> tuple[np.ndarray, np.ndarray]:
    """Per-gene mean and unbiased variance (float64), as scanpy's ``_get_mean_var``.

    As there, each value is squared in the data's own precision and the sums are float64.
    """
    n = X.shape[0]
    if sp.issparse(X):
        X = sp.csr_matrix(X)
        sums = np.bincount(X.indices, weights=X.data.astype(np.float64), minlength=X.shape[1])
        squares = np.bincount(X.indices, weights=(X.data * X.data).astype(np.float64), minlength=X.shape[1])
        mean = sums / n
        var = squares / n - (sums / n) ** 2
    else:
        X = np.asarray(X)
        mean = X.mean(axis=0, dtype=np.float64)
        var = (X * X).mean(axis=0, dtype=np.float64) - mean**2
    return mean, var * (n / (n - 1)) if n > 1 else np.zeros_like(var)


def _loess_fit(x: np.ndarray, y: np.ndarray, span: float) -> np.ndarray:
    try:
        from skmisc.loess import loess
    except ImportError as err:  # a dependency of snakevi; only a hand-made environment lacks it
        raise ImportError("setup.hvg_flavor seurat_v3 needs scikit-misc's loess: pip install scikit-misc") from err
    model = loess(x, y, span=span, degree=2)
    model.fit()
    return model.outputs.fitted_values


def seurat_v3_normalized_variance(X, span: float = LOESS_SPAN) -> np.ndarray:
    """Normalised (clipped, standardised) variance of each gene's counts in one batch."""
    n = X.shape[0]
    mean, var = mean_var(X)
    not_const = var > 0
    expected = np.zeros(X.shape[1], dtype=np.float64)
    expected[not_const] = _loess_fit(np.log10(mean[not_const]), np.log10(var[not_const]), span)
    reg_std = np.sqrt(10**expected)
    clip = reg_std * np.sqrt(n) + mean
    if sp.issparse(X):
        X = sp.csr_matrix(X)
        values = np.minimum(X.data.astype(np.float64), clip[X.indices])
        sums = np.bincount(X.indices, weights=values, minlength=X.shape[1])
        squares = np.bincount(X.indices, weights=values**2, minlength=X.shape[1])
    else:
        clipped = np.minimum(np.asarray(X, dtype=np.float64), clip[None, :])
        sums, squares = clipped.sum(axis=0), np.square(clipped).sum(axis=0)
    return (1 / ((n - 1) * np.square(reg_std))) * (n * np.square(mean) + squares - 2 * sums * mean)


def _seurat_v3(X, n_top_genes: int, batches, flavor: str, span: float) -> tuple[np.ndarray, dict]:
    codes = np.zeros(X.shape[0], dtype=int) if batches is None else np.asarray(batches)
    norm_vars = np.stack([seurat_v3_normalized_variance(X[codes == b], span) for b in np.unique(codes)])
    # Ranks by argsort twice (0 = most variable), in float32, as scanpy (and Seurat's
    # SelectIntegrationFeatures): the same calls put tied genes in the same order.
    ranks = np.argsort(np.argsort(-norm_vars, axis=1), axis=1).astype(np.float32)
    n_batches = np.sum((ranks < n_top_genes).astype(int), axis=0)
    ranks[ranks >= n_top_genes] = np.nan
    median_rank = np.ma.median(np.ma.masked_invalid(ranks), axis=0).filled(np.nan)
    table = pd.DataFrame({"highly_variable_rank": median_rank, "highly_variable_nbatches": n_batches})
    columns = ["highly_variable_rank", "highly_variable_nbatches"]
    ascending = [True, False]
    if flavor == "seurat_v3_paper":
        columns, ascending = columns[::-1], ascending[::-1]
    order = table.sort_values(columns, ascending=ascending, na_position="last").index.to_numpy()
    return order[:n_top_genes], {"n_batches": n_batches, "median_rank": median_rank,
                                 "n_batches_used": len(norm_vars)}


def highly_variable_genes(X, n_top_genes: int, batches: np.ndarray | None = None, *,
                          flavor: str = "seurat_v3", span: float = LOESS_SPAN, n_bins: int = 20,
                          gene_names=None) -> dict:
    """Select ``n_top_genes`` highly variable genes from raw counts, as scanpy does.

    Parameters
    ----------
    X
        Raw counts, cells x genes (dense or scipy sparse).
    n_top_genes
        Number of genes to select; at most ``X.shape[1]``. (``seurat`` and ``cell_ranger``
        without batches keep every gene tied with the last one, as scanpy: possibly a few more.)
    batches
        Per-cell batch of each cell (scanpy's ``batch_key``); ``None``: one batch.
    flavor
        One of :data:`HVG_FLAVORS`.
    span, n_bins
        scanpy's ``span`` (seurat_v3 loess) and ``n_bins`` (seurat dispersion bins).
    gene_names
        The genes' names (``var_names``): scanpy's dispersion flavours with batches order genes
        of equal scores by name, so the names decide such ties. ``None``: by position.

    Returns
    -------
    dict
        ``selected`` (sorted int positions of the chosen genes), ``n_batches_used`` and the
        flavour's per-gene statistics.
    """
    n_genes = X.shape[1]
    if flavor not in HVG_FLAVORS:
        raise ValueError(f"flavor must be one of {', '.join(HVG_FLAVORS)}; got {flavor!r}.")
    if not 0 < n_top_genes <= n_genes:
        raise ValueError(f"n_top_genes must be in [1, {n_genes}], got {n_top_genes}.")
    if X.dtype == np.float16:  # squares of counts above 255 overflow float16; the API trains on float32
        X = X.astype(np.float32)
    if sp.issparse(X):
        X = sp.csr_matrix(X)
    if batches is not None:
        _, counts = np.unique(np.asarray(batches), return_counts=True)
        if counts.min() < 2:
            raise ValueError("Highly variable gene selection needs at least 2 cells in every batch.")
    elif X.shape[0] < 2:
        raise ValueError("Highly variable gene selection needs at least 2 cells.")
    if flavor.startswith("seurat_v3"):
        chosen, stats = _seurat_v3(X, n_top_genes, batches, flavor, span)
    else:
        from snakevi.data.hvg_dispersion import dispersion_genes

        chosen, stats = dispersion_genes(scanpy_log_normalize(X), n_top_genes, batches, flavor, n_bins,
                                         gene_names)
    return {"selected": np.sort(np.asarray(chosen, dtype=np.int64)), **stats}


def scanpy_log_normalize(X, target_sum: float = 1e4):
    """``sc.pp.normalize_total(target_sum=1e4)`` then ``sc.pp.log1p`` of counts, in float32 as scanpy."""
    X = sp.csr_matrix(X, dtype=np.float32, copy=True) if sp.issparse(X) else \
        sp.csr_matrix(np.asarray(X, dtype=np.float32))
    rows = np.repeat(np.arange(X.shape[0]), np.diff(X.indptr))
    # scanpy sums each cell in float64 and stores the total in the data's float32.
    per_cell = np.bincount(rows, weights=X.data.astype(np.float64), minlength=X.shape[0]).astype(np.float32)
    factor = per_cell / np.float32(target_sum)
    with np.errstate(divide="ignore", invalid="ignore"):
        X.data = X.data / factor[rows]
    np.log1p(X.data, out=X.data)
    return X
