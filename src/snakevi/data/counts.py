"""Find the count matrix of an AnnData, check that it holds raw counts, and summarise it.

The scan reads sparse matrices through their ``.data`` array only (the stored values) in
fixed-size chunks, and dense matrices in row blocks, so checking a million-cell matrix needs no
dense copy and little extra memory.
"""

from __future__ import annotations

import warnings

import numpy as np
import scipy.sparse as sp

from snakevi.data.validation import RegistrationError, examples

#: Elements per chunk when scanning: large enough for numpy to run at full speed, small
#: enough that the temporaries (a few bool/float arrays of this size) stay in the tens of MB.
_CHUNK = 1 << 22


def where_counts(layer: str | None) -> str:
    """``adata.X`` or ``adata.layers['counts']``: how messages name the matrix."""
    return "adata.X" if layer is None else f"adata.layers[{layer!r}]"


def get_count_matrix(adata, layer: str | None):
    """The matrix that holds the counts: ``adata.X`` or ``adata.layers[layer]``."""
    if adata.isbacked:
        raise RegistrationError(
            "The AnnData is opened in backed mode; snakevi reads the counts into memory. "
            "Load it with anndata.read_h5ad(path) (no backed=...), or call adata = adata.to_memory()."
        )
    layers = list(adata.layers.keys())
    if layer is not None:
        if layer not in adata.layers:
            raise RegistrationError(
                f"layer={layer!r} is not in adata.layers. Available layers: "
                f"{examples(layers, n=30) if layers else 'none'}. "
                "Pass one of them, or layer=None to use adata.X."
            )
        return adata.layers[layer]
    if adata.X is None:
        raise RegistrationError(
            "adata.X is empty (None); pass layer=<name> to use a layer instead. Available layers: "
            f"{examples(layers, n=30) if layers else 'none'}."
        )
    return adata.X


def storage_format(X) -> str:
    """``'dense'``, ``'csr'`` or ``'csc'``; anything else is refused with the conversion to use."""
    if isinstance(X, np.ndarray):
        return "dense"
    if sp.issparse(X):
        if X.format in ("csr", "csc"):
            return X.format
        raise RegistrationError(
            f"The count matrix is a scipy.sparse {X.format.upper()} matrix; snakevi reads CSR, CSC or "
            "dense arrays. Convert it, e.g. adata.X = scipy.sparse.csr_matrix(adata.X)."
        )
    raise RegistrationError(
        f"The count matrix has type {type(X).__module__}.{type(X).__name__}; snakevi reads "
        "numpy arrays and scipy CSR/CSC matrices. Convert it, e.g. adata.X = np.asarray(adata.X) "
        "or scipy.sparse.csr_matrix(...); for dask arrays call .compute() first."
    )


def _bad_entries(values: np.ndarray) -> np.ndarray:
    """Mask of entries that are not finite non-negative integers."""
    if np.issubdtype(values.dtype, np.integer) or values.dtype == np.bool_:
        return values < 0
    return ~np.isfinite(values) | (values < 0) | (values != np.floor(values))


def _reason(value: float) -> str:
    if np.isnan(value):
        return "NaN"
    if np.isinf(value):
        return "infinite"
    if value < 0:
        return "negative"
    return "not an integer"


def _raise_bad_entry(value, cell: str, gene: str, where: str, layers: list[str]) -> None:
    value = value.item() if isinstance(value, np.generic) else value
    listed = examples(layers, n=30) if layers else "none"
    raise RegistrationError(
        f"{where} must hold raw counts (finite, non-negative integers), because snakevi models them "
        f"with a count likelihood; but the entry for cell {cell!r}, gene {gene!r} is {value!r} "
        f"({_reason(value)}). If {where} holds normalised or log-transformed values, put the "
        f"raw counts in a layer and pass layer='<name>' (layers present: {listed})."
    )


def _scan_sparse(X, obs_names, var_names, where, layers) -> tuple[float, int]:
    """Check ``X.data`` chunk by chunk; return (max value, number of non-zero entries)."""
    data = X.data
    max_count, nnz = 0.0, 0
    for start in range(0, data.size, _CHUNK):
        chunk = data[start : start + _CHUNK]
        bad = _bad_entries(chunk)
        if bad.any():
            pos = start + int(np.flatnonzero(bad)[0])
            major = int(np.searchsorted(X.indptr, pos, side="right") - 1)
            minor = int(X.indices[pos])
            row, col = (major, minor) if X.format == "csr" else (minor, major)
            _raise_bad_entry(data[pos], obs_names[row], var_names[col], where, layers)
        max_count = max(max_count, float(chunk.max()))
        nnz += int(np.count_nonzero(chunk))
    return max_count, nnz


def _scan_dense(X, obs_names, var_names, where, layers):
    """Check ``X`` in row blocks; return (max, nnz, row sums, column sums)."""
    n_obs, n_vars = X.shape
    rows = max(1, _CHUNK // max(n_vars, 1))
    max_count, nnz = 0.0, 0
    row_sums = np.empty(n_obs, dtype=np.float64)
    col_sums = np.zeros(n_vars, dtype=np.float64)
    for start in range(0, n_obs, rows):
        block = X[start : start + rows]
        bad = _bad_entries(block)
        if bad.any():
            r, c = divmod(int(np.flatnonzero(bad)[0]), n_vars)
            _raise_bad_entry(block[r, c], obs_names[start + r], var_names[c], where, layers)
        max_count = max(max_count, float(block.max()))
        nnz += int(np.count_nonzero(block))
        row_sums[start : start + rows] = block.sum(axis=1, dtype=np.float64)
        col_sums += block.sum(axis=0, dtype=np.float64)
    return max_count, nnz, row_sums, col_sums


#: float16 holds every integer up to 2**11; above that it rounds to even numbers and coarser.
FLOAT16_EXACT_MAX = 2048


def _warn_half_precision(dtype, max_count: float, where: str) -> None:
    """float16 counts train (widened to float32), but counts above 2048 may have been rounded."""
    if dtype == np.float16 and max_count > FLOAT16_EXACT_MAX:
        warnings.warn(
            f"{where} holds float16 counts, which round counts above {FLOAT16_EXACT_MAX} (the largest is "
            f"{max_count:.0f}): some may already differ from the raw counts. Store counts as integers or "
            "float32 at the source.",
            UserWarning,
            stacklevel=4,
        )


def scan_counts(adata, layer: str | None) -> tuple[dict, np.ndarray]:
    """Check that the count matrix holds raw counts; return (summary, per-cell total counts).

    Raises
    ------
    RegistrationError
        On the first NaN, infinite, negative or non-integer entry (naming its cell, gene and
        value), and when some cells have zero total counts.
    """
    X = get_count_matrix(adata, layer)
    if isinstance(X, np.matrix):
        X = np.asarray(X)
    fmt = storage_format(X)
    where = where_counts(layer)
    layers = list(adata.layers.keys())
    obs_names, var_names = adata.obs_names, adata.var_names
    if fmt == "dense":
        max_count, nnz, row_sums, col_sums = _scan_dense(X, obs_names, var_names, where, layers)
    else:
        max_count, nnz = _scan_sparse(X, obs_names, var_names, where, layers)
        # Sums in the matrix's own dtype: exact for integer counts below 2**24 per cell in
        # float32, and zero stays zero, which is all the zero-count checks need.
        row_sums = np.asarray(X.sum(axis=1)).ravel().astype(np.float64)
        col_sums = np.asarray(X.sum(axis=0)).ravel()
    zero_cells = np.flatnonzero(row_sums == 0)
    if zero_cells.size:
        raise RegistrationError(
            f"{zero_cells.size} of {adata.n_obs} cells have zero total counts in {where}, e.g. "
            f"{examples(obs_names[zero_cells])}. Their log library size would be -inf and the "
            "loss NaN. Remove them first, e.g. "
            "adata = adata[np.asarray(adata.X.sum(axis=1)).ravel() > 0].copy() "
            "(or scanpy.pp.filter_cells(adata, min_counts=1))."
        )
    _warn_half_precision(X.dtype, max_count, where)
    summary = {
        "storage_format": fmt,
        "dtype": str(X.dtype),
        "total_counts": float(row_sums.sum()),
        "n_cells_zero_counts": int(zero_cells.size),
        "n_genes_zero_counts": int(np.count_nonzero(col_sums == 0)),
        "max_count": float(max_count),
        "fraction_nonzero": float(nnz) / float(adata.n_obs * adata.n_vars),
    }
    return summary, row_sums
