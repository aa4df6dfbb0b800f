"""Query genes for reference mapping: the reference's genes, in its order, zeros where missing."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from snakevi.data.compatibility import check_gene_overlap
from snakevi.data.validation import RegistrationError, examples

if TYPE_CHECKING:  # pragma: no cover
    from anndata import AnnData

#: Below this fraction of reference genes present in the query, scvi-tools warns.
MIN_VAR_NAME_RATIO = 0.8


def pad_query_genes(
    adata: AnnData,
    ref_names: Sequence[str],
    *,
    inplace: bool = True,
    min_gene_overlap: float = 0.5,
) -> AnnData | None:
    """The query with the genes ``ref_names``, in order; see :func:`snakevi.model.arches.prepare_query_anndata`.

    Returns
    -------
    ``None`` (``inplace``) or the new AnnData.
    """
    ref_names = pd.Index([str(g) for g in ref_names])
    query_names = pd.Index([str(g) for g in adata.var_names])
    if not query_names.is_unique:
        dups = query_names[query_names.duplicated()].unique()
        raise RegistrationError(
            f"The query's var_names have {len(dups)} duplicate(s), e.g. {examples(dups)}; make them unique "
            "(adata.var_names_make_unique()) before preparing the query."
        )
    pos = query_names.get_indexer(ref_names)
    have = pos >= 0
    n_found, n_ref = int(have.sum()), len(ref_names)
    check_gene_overlap(n_found, n_ref, query_names, ref_names, min_gene_overlap)
    if inplace and adata.is_view:
        raise ValueError(
            "adata is a view (e.g. adata[mask]); prepare a copy (adata[mask].copy()) or pass inplace=False."
        )
    if n_found == n_ref:
        if not inplace:
            return adata[:, pos].copy()
        if not (len(query_names) == n_ref and (pos == np.arange(n_ref)).all()):
            adata._inplace_subset_var(pos)
        return None
    missing = ref_names[~have]
    note = (
        f" Only {n_found / n_ref:.0%} of the reference's genes are present (under {MIN_VAR_NAME_RATIO:.0%}); "
        "the mapping may be poor." if n_found / n_ref < MIN_VAR_NAME_RATIO else ""
    )
    warnings.warn(
        f"{len(missing)} of the reference's {n_ref} genes are missing from the query (e.g. {examples(missing)}); "
        f"they were added as zero-count columns.{note}",
        UserWarning,
        stacklevel=3,  # the caller of prepare_query_anndata
    )
    out = _padded_anndata(adata, pos, ref_names)
    if not inplace:
        return out
    adata._init_as_actual(out)
    return None


def _select_columns(M, pos: np.ndarray):
    """Columns ``pos`` of ``M`` (dense or sparse), with all-zero columns where ``pos < 0``."""
    import scipy.sparse as sp

    have = pos >= 0
    if sp.issparse(M):
        # A 0/1 selection matrix: each output column sums exactly one input value.
        S = sp.csr_matrix(
            (np.ones(int(have.sum()), dtype=M.dtype), (pos[have], np.flatnonzero(have))),
            shape=(M.shape[1], len(pos)),
        )
        out = (M @ S).asformat(M.format if M.format in ("csr", "csc") else "csr")
        out.sort_indices()
        return out
    if isinstance(M, np.ndarray):
        out = np.zeros((M.shape[0], len(pos)), dtype=M.dtype)
        out[:, have] = M[:, pos[have]]
        return out
    raise TypeError(
        f"Cannot pad a {type(M).__name__} matrix; load the query into memory "
        "(anndata.read_h5ad without backed=...) as a numpy array or scipy sparse matrix."
    )


def _padded_anndata(adata, pos: np.ndarray, ref_names: pd.Index):
    """A new AnnData with ``ref_names`` as genes: the query's columns ``pos``, zeros where ``pos < 0``."""
    from anndata import AnnData

    have = pos >= 0
    var = adata.var.iloc[np.where(have, pos, 0)].copy()
    var.index = pd.Index(ref_names, name=adata.var.index.name)
    for col in var.columns:
        s = var[col]
        if pd.api.types.is_bool_dtype(s):
            var[col] = s.where(have, False)
        elif pd.api.types.is_numeric_dtype(s) or isinstance(s.dtype, pd.CategoricalDtype):
            var[col] = s.where(have)
        else:
            var[col] = s.where(have, "")
    return AnnData(
        X=_select_columns(adata.X, pos),
        obs=adata.obs.copy(),
        var=var,
        uns=dict(adata.uns),
        obsm=dict(adata.obsm),
        obsp=dict(adata.obsp),
        layers={k: _select_columns(v, pos) for k, v in adata.layers.items()},
        raw=adata.raw,
    )
