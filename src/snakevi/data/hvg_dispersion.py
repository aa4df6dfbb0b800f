"""scanpy's dispersion flavours of highly variable genes: ``seurat`` and ``cell_ranger``.

Both work on log-normalized data. Per gene: mean and variance (for ``seurat`` of
``expm1(data)``), dispersion = variance / mean (``seurat``: its log, with the log1p of the
mean); genes are binned by mean (``seurat``: ``n_bins`` equal-width bins; ``cell_ranger``: the
5 % percentiles from 10 % up) and each dispersion is normalised within its bin (``seurat``:
mean and standard deviation, a gene alone in its bin gets 1; ``cell_ranger``: median and
MAD). Without batches the genes whose normalised dispersion reaches the ``n_top_genes``-th
highest are kept; with batches, each batch is scored on its expressed genes and genes are
ordered by the number of batches where they were chosen, then by their mean normalised
dispersion. pandas does the binning and grouping, as in scanpy, so edge cases fall alike.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp

from snakevi.data.hvg import mean_var

#: statsmodels' MAD scale: 1 / Phi^-1(3/4), so that the MAD of normal data estimates its sd.
_MAD_SCALE = 0.6744897501960817


def _mad(values) -> float:
    values = np.asarray(values, dtype=np.float64)
    return float(np.median(np.abs(values - np.median(values))) / _MAD_SCALE)


def _normalised_dispersions(X, flavor: str, n_bins: int) -> pd.DataFrame:
    """``means``, ``dispersions``, ``dispersions_norm`` of every gene of ``X`` (log-normalized)."""
    if flavor == "seurat":
        X = X.copy()
        if sp.issparse(X):
            X.data = np.expm1(X.data)
        else:
            X = np.expm1(X)
    mean, var = mean_var(X)
    mean[mean == 0] = 1e-12
    dispersion = var / mean
    if flavor == "seurat":
        dispersion[dispersion == 0] = np.nan
        dispersion = np.log(dispersion)
        mean = np.log1p(mean)
    df = pd.DataFrame({"means": mean, "dispersions": dispersion})
    bins = n_bins if flavor == "seurat" else np.r_[-np.inf, np.percentile(df["means"], np.arange(10, 105, 5)), np.inf]
    df["mean_bin"] = pd.cut(df["means"], bins=bins)
    grouped = df.groupby("mean_bin", observed=True)["dispersions"]
    if flavor == "seurat":
        stats = grouped.agg(avg="mean", dev="std")
        alone = stats["dev"].isnull()  # one gene in its bin: normalised dispersion 1
        stats.loc[alone, "dev"] = stats.loc[alone, "avg"]
        stats.loc[alone, "avg"] = 0
    else:
        stats = grouped.agg(avg="median", dev=_mad)
    stats = stats.loc[df["mean_bin"]].set_index(df.index)
    df["dispersions_norm"] = (df["dispersions"] - stats["avg"]) / stats["dev"]
    return df


def _top_by_dispersion(dispersion_norm: np.ndarray, n_top_genes: int) -> np.ndarray:
    """scanpy's cut: every gene at or above the ``n_top_genes``-th highest defined value."""
    defined = np.sort(dispersion_norm[~np.isnan(dispersion_norm)])[::-1]
    cutoff = defined[min(n_top_genes, defined.size) - 1]
    return np.nan_to_num(dispersion_norm, nan=-np.inf) >= cutoff


def dispersion_genes(X, n_top_genes: int, batches, flavor: str, n_bins: int,
                     gene_names=None) -> tuple[np.ndarray, dict]:
    """Positions of the selected genes (in selection order) and per-gene statistics.

    With batches, scanpy merges the batches' tables by gene name (which sorts them by name)
    before its stable sort by score: genes of equal scores come in name order, here too.
    """
    n_genes = X.shape[1]
    names = pd.Index(np.arange(n_genes) if gene_names is None else np.asarray(gene_names).astype(str))
    if batches is None:
        df = _normalised_dispersions(X, flavor, n_bins)
        chosen = np.flatnonzero(_top_by_dispersion(df["dispersions_norm"].to_numpy(), n_top_genes))
        return chosen, {"dispersions_norm": df["dispersions_norm"].to_numpy(), "n_batches_used": 1}
    batches = pd.Categorical(np.asarray(batches).astype(str))
    frames = []
    for batch in batches.categories:
        cells = np.flatnonzero(batches == batch)
        sub = X[cells]
        expressed = np.flatnonzero(np.asarray((sub != 0).sum(axis=0)).ravel() > 0)
        df = _normalised_dispersions(sub[:, expressed], flavor, n_bins)
        df["highly_variable"] = _top_by_dispersion(df["dispersions_norm"].to_numpy(),
                                                   min(n_top_genes, len(expressed))).astype(int)
        df = df.drop(columns="mean_bin").set_index(names[expressed])
        missing = names[np.setdiff1d(np.arange(n_genes), expressed)]  # unexpressed in the batch: zeros
        zeros = pd.DataFrame(0.0, index=missing, columns=df.columns).astype({"highly_variable": int})
        frames.append(pd.concat([df, zeros]))
    merged = pd.concat(frames).groupby(level=0).agg(
        {"means": "mean", "dispersions": "mean", "dispersions_norm": "mean", "highly_variable": "sum"})
    merged = merged.rename(columns={"highly_variable": "highly_variable_nbatches"})
    ranked = merged.sort_values(["highly_variable_nbatches", "dispersions_norm"], ascending=False,
                                na_position="last").index
    merged = merged.loc[names]
    return names.get_indexer(ranked[:n_top_genes]), {
        "n_batches": merged["highly_variable_nbatches"].to_numpy(),
        "dispersions_norm": merged["dispersions_norm"].to_numpy(),
        "n_batches_used": len(batches.categories)}
