"""``CellData``: the arrays training needs, in memory, with one vectorised ``gather``.

A ``CellData`` is what loaders read from: the count matrix (dense or CSR) and one numpy array
per minibatch key, already encoded with the registry's category mappings. It knows nothing of
torch, so building it (and the registry) stays cheap to import.
"""

from __future__ import annotations

import warnings

import numpy as np
import scipy.sparse as sp

from snakevi._constants import REGISTRY_KEYS
from snakevi.data.counts import get_count_matrix
from snakevi.data.compatibility import check_compatible
from snakevi.data.registry import check_registry_format, get_registry
from snakevi.data.validation import RegistrationError, check_obs_key, examples

K = REGISTRY_KEYS


def _row_major(X):
    """The count matrix in a layout whose row gathers are cheap: dense ndarray or CSR."""
    if isinstance(X, np.ndarray):
        return np.asarray(X)  # np.matrix -> ndarray, no copy
    if sp.issparse(X):
        # Minibatches gather rows. In CSC a row gather must visit every column's index list
        # (O(nnz) per minibatch); in CSR it copies just the chosen rows. Converting once costs
        # one O(nnz) pass and saves that on every minibatch of every epoch.
        if X.format == "csr":
            return X if isinstance(X, sp.csr_matrix) else sp.csr_matrix(X)
        return sp.csr_matrix(X.tocsr())
    raise TypeError(
        f"CellData needs a numpy array or a scipy sparse matrix, got {type(X).__name__}; "
        "convert it with np.asarray(...) or scipy.sparse.csr_matrix(...)."
    )


#: Stored values per chunk when summing log-factorials (bounds the temporary float64 arrays).
_LOG_FACTORIAL_CHUNK = 1 << 20


def count_log_factorials(X) -> np.ndarray:
    """``sum_g log(x_g!)`` for each cell of a dense or CSR count matrix, as float32.

    Works through the matrix in chunks of rows, so a memory-mapped matrix of any size needs
    only a bounded amount of memory.
    """
    from scipy.special import gammaln

    n = X.shape[0]
    out = np.zeros(n, dtype=np.float64)
    if not sp.issparse(X):
        step = max(1, _LOG_FACTORIAL_CHUNK // max(1, X.shape[1]))
        for lo in range(0, n, step):
            out[lo:lo + step] = gammaln(np.asarray(X[lo:lo + step], dtype=np.float64) + 1.0).sum(axis=1)
        return out.astype(np.float32)
    indptr = np.asarray(X.indptr, dtype=np.int64)
    lo = 0
    while lo < n:
        # As many rows as fit in one chunk of stored values (at least one row).
        hi = max(lo + 1, int(np.searchsorted(indptr, indptr[lo] + _LOG_FACTORIAL_CHUNK, side="right")) - 1)
        hi = min(hi, n)
        a, b = indptr[lo], indptr[hi]
        terms = gammaln(np.asarray(X.data[a:b], dtype=np.float64) + 1.0)
        rows = np.repeat(np.arange(hi - lo), np.diff(indptr[lo:hi + 1]))
        out[lo:hi] = np.bincount(rows, weights=terms, minlength=hi - lo)
        lo = hi
    return out.astype(np.float32)


class CellData:
    """In-memory view of registered data: counts plus per-cell codes and covariates.

    Parameters
    ----------
    X
        Counts, ``(n_obs, n_vars)``: a numpy array or any scipy sparse matrix (kept as CSR).
    obs
        Per-cell arrays keyed by minibatch key (see ``snakevi._constants.REGISTRY_KEYS``):
        ``"batch"`` and ``"labels"`` int64 ``(n_obs, 1)`` (required), ``"size_factor"``
        float32 ``(n_obs, 1)``, ``"extra_categorical_covs"`` int64 ``(n_obs, K)``,
        ``"extra_continuous_covs"`` float32 ``(n_obs, C)`` (when registered).
    registry
        The registry describing the data (see :func:`snakevi.data.setup_anndata`).
    """

    def __init__(self, X, obs: dict[str, np.ndarray], registry: dict) -> None:
        self.X = _row_major(X)
        n = self.X.shape[0]
        for key in (K.BATCH_KEY, K.LABELS_KEY):
            if key not in obs:
                raise ValueError(f"CellData.obs needs a {key!r} array of shape (n_obs, 1).")
        for key, arr in obs.items():
            if arr.ndim != 2 or arr.shape[0] != n:
                raise ValueError(f"CellData.obs[{key!r}] has shape {arr.shape}; expected ({n}, k).")
        self.obs = dict(obs)
        self.registry = registry
        self._log_factorial: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.X.shape[0])

    @property
    def n_vars(self) -> int:
        """Number of genes (columns of ``X``)."""
        return int(self.X.shape[1])

    def __repr__(self) -> str:
        fmt = "csr" if sp.issparse(self.X) else "dense"
        return f"CellData({len(self)} cells x {self.n_vars} genes, X {fmt}, obs keys {sorted(self.obs)})"

    def gather(self, indices) -> dict[str, np.ndarray]:
        """The minibatch for cells ``indices``: ``{"X": float32 (B, G), <obs keys>: (B, k)}``.

        One fancy-indexing call per array (a CSR row gather, then ``toarray``), never a loop
        over cells.
        """
        idx = np.asarray(indices, dtype=np.int64)
        rows = self.X[idx]
        if sp.issparse(rows):
            rows = rows.toarray()
        out = {K.X_KEY: np.ascontiguousarray(rows, dtype=np.float32)}
        for key, arr in self.per_cell_arrays().items():
            out[key] = arr[idx]
        return out

    def per_cell_arrays(self) -> dict[str, np.ndarray]:
        """``obs`` plus the derived per-cell ``"x_log_factorial"`` (``sum_g log(x_g!)``, float32).

        Every count likelihood of the model has the term ``-log(x!)``, which depends on the
        data only. Computed here once per cell from the stored non-zeros (``log(0!) = 0``), it
        spares every training step a dense ``lgamma`` over the minibatch, the most expensive
        elementwise op of the loss.
        """
        if self._log_factorial is None:
            self._log_factorial = count_log_factorials(self.X)[:, None]
        return {**self.obs, K.X_LOG_FACTORIAL_KEY: self._log_factorial}

    @classmethod
    def from_anndata(cls, adata, registry: dict | None = None) -> CellData:
        """Build from an AnnData, encoding categories with ``registry``'s mappings.

        Parameters
        ----------
        adata
            The data. It must fit the registry (:func:`~snakevi.data.compatibility.check_compatible`):
            the registry's genes in the same order, its columns, only categories it knows.
        registry
            Defaults to the one :func:`setup_anndata` stored on ``adata``. The counts are not
            re-scanned here (``setup_anndata``/``transfer_setup`` did that); names, categories
            and covariates are checked.
        """
        registry = get_registry(adata) if registry is None else registry
        check_registry_format(registry, "the registry")
        fields = registry["fields"]
        check_compatible(registry, adata)
        X = get_count_matrix(adata, fields[K.X_KEY]["attr_key"])
        obs = {
            K.BATCH_KEY: _encode(adata, fields[K.BATCH_KEY]["original_key"],
                                 fields[K.BATCH_KEY]["categorical_mapping"], "batch_key")[:, None],
            K.LABELS_KEY: _encode(adata, fields[K.LABELS_KEY]["original_key"],
                                  fields[K.LABELS_KEY]["categorical_mapping"], "labels_key")[:, None],
        }
        sf_key = fields[K.SIZE_FACTOR_KEY]["original_key"]
        if sf_key is not None:
            obs[K.SIZE_FACTOR_KEY] = _numeric(adata, [sf_key], "size_factor_key", positive=True)
        cat = fields[K.CAT_COVS_KEY]
        if cat["field_keys"]:
            codes = [_encode(adata, k, cat["mappings"][k], "categorical_covariate_keys") for k in cat["field_keys"]]
            obs[K.CAT_COVS_KEY] = np.stack(codes, axis=1)
        cont = fields[K.CONT_COVS_KEY]["columns"]
        if cont:
            obs[K.CONT_COVS_KEY] = _numeric(adata, cont, "continuous_covariate_keys")
        return cls(X, obs, registry)


def _encode(adata, key: str | None, mapping: list, role: str) -> np.ndarray:
    """int64 codes of ``adata.obs[key]`` in ``mapping``'s order (zeros when ``key`` is None)."""
    if key is None:
        return np.zeros(adata.n_obs, dtype=np.int64)
    import pandas as pd  # here, not at the top: the train and report jobs read no AnnData

    check_obs_key(adata, key, role)
    column = adata.obs[key]
    codes = pd.Categorical(column, categories=mapping).codes.astype(np.int64)
    bad = codes < 0
    if bad.any():
        values = column[bad]
        if values.isna().any():
            detail = f"{int(values.isna().sum())} missing value(s)"
        else:
            detail = f"categories not in the registry: {examples(pd.unique(values.astype(object)))}"
        raise RegistrationError(
            f"adata.obs[{key!r}] ({role}) has {int(bad.sum())} cell(s) that the registry cannot encode "
            f"({detail}); known categories: {examples(mapping, n=10)}. Register this data with "
            "transfer_setup(adata, registry) (extend_categories=True to add categories) or fix the column."
        )
    return codes


def _numeric(adata, keys: list[str], role: str, positive: bool = False) -> np.ndarray:
    """float32 ``(n_obs, len(keys))`` from ``obs`` columns, refusing non-finite (or <= 0) values."""
    for key in keys:
        check_obs_key(adata, key, role)
    values = adata.obs[keys].to_numpy(dtype=np.float64, na_value=np.nan)
    bad = ~np.isfinite(values)
    if positive:
        bad |= values <= 0
    if bad.any():
        r, c = divmod(int(np.flatnonzero(bad)[0]), len(keys))
        raise RegistrationError(
            f"adata.obs[{keys[c]!r}] ({role}) has {int(bad[:, c].sum())} invalid value(s), e.g. "
            f"{values[r, c]!r} in cell {adata.obs_names[r]!r}; "
            + ("size factors must be positive and finite." if positive else "values must be finite.")
        )
    return values.astype(np.float32)


def library_size_stats(data) -> tuple[np.ndarray, np.ndarray]:
    """Per-batch mean and variance of the log total counts, as scvi-tools' ``_init_library_size``.

    Parameters
    ----------
    data
        A :class:`CellData`, or a registered AnnData.

    Returns
    -------
    (log_means, log_vars)
        float32 arrays of shape ``(1, n_batch)``; a batch with no cells gets mean 0 and
        variance 1 (placeholders, as in scvi-tools). Cells with zero counts enter as log 0 := 0,
        with a warning, as scvi-tools does.
    """
    if not isinstance(data, CellData):
        data = CellData.from_anndata(data)
    n_batch = int(data.registry["summary"]["n_batch"])
    X = data.X
    if sp.issparse(X):
        totals = np.asarray(X.sum(axis=1)).ravel().astype(np.float64)
    else:
        totals = X.sum(axis=1, dtype=np.float64)
    if (totals <= 0).any():
        warnings.warn(
            f"{int((totals <= 0).sum())} cells have zero total counts; their log library size is "
            "taken as 0. Filter them out (e.g. scanpy.pp.filter_cells(adata, min_counts=1)).",
            UserWarning,
            stacklevel=2,
        )
    logs = np.log(np.where(totals > 0, totals, 1.0))
    batch = data.obs[K.BATCH_KEY][:, 0]
    n = np.bincount(batch, minlength=n_batch).astype(np.float64)
    present = n > 0
    sums = np.bincount(batch, weights=logs, minlength=n_batch)
    means = np.zeros(n_batch)
    means[present] = sums[present] / n[present]
    # Two passes (mean, then squared deviations) keep the variance accurate for log totals ~ 8.
    sq = np.bincount(batch, weights=(logs - means[batch]) ** 2, minlength=n_batch)
    variances = np.ones(n_batch)
    variances[present] = sq[present] / n[present]
    return means.astype(np.float32).reshape(1, -1), variances.astype(np.float32).reshape(1, -1)
