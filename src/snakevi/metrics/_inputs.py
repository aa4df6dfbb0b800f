"""Checks and conversions shared by the metrics: embeddings, label/batch vectors, warnings.

Every check raises :class:`MetricInputError` saying what was wrong (which argument, how many
values, which cell) and what to do about it.
"""

from __future__ import annotations

import warnings

import numpy as np


class MetricInputError(ValueError):
    """A metric cannot be computed on its inputs; the message says which input and why."""


class UndefinedMetricWarning(UserWarning):
    """A metric is not defined for these inputs (e.g. a batch metric with one batch): it is NaN."""


def warn_undefined(metric: str, why: str) -> float:
    """Warn that ``metric`` is undefined here and return NaN, its value."""
    warnings.warn(f"{metric} is not defined here ({why}); it is reported as NaN.", UndefinedMetricWarning,
                  stacklevel=3)
    return float("nan")


def as_embedding(X, name: str = "embedding") -> np.ndarray:
    """``X`` as a C-contiguous float64 array of shape (n_cells, n_dims), refusing non-finite values."""
    if hasattr(X, "toarray"):  # a sparse matrix: the metrics need dense coordinates
        X = X.toarray()
    X = np.asarray(X)
    if X.dtype.kind not in "biuf":
        raise MetricInputError(f"{name} must hold numbers (got dtype {X.dtype}); pass a float array of cells x dims.")
    X = np.ascontiguousarray(X, dtype=np.float64)
    if X.ndim == 1:
        X = X[:, None]
    if X.ndim != 2:
        raise MetricInputError(f"{name} must be 2-D (cells x dims); got shape {X.shape}.")
    if X.shape[0] == 0 or X.shape[1] == 0:
        raise MetricInputError(f"{name} is empty (shape {X.shape}); it needs at least one cell and one dimension.")
    finite = np.isfinite(X).all(axis=1)
    if not finite.all():
        bad = np.flatnonzero(~finite)
        raise MetricInputError(
            f"{name} has NaN or infinite values in {bad.size} of {X.shape[0]} cells (first at row {bad[0]}); "
            "metrics need finite coordinates: check the model's output or drop those cells first."
        )
    return X


def as_codes(values, name: str, n_cells: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Integer codes 0..n_categories-1 and the sorted categories of a label or batch vector.

    Strings, integers and pandas categoricals are all accepted; categories are sorted as
    ``pandas.Categorical`` sorts them (as scib-metrics does), so codes do not depend on cell order
    (a categorical keeps its own category order; no metric depends on it).
    Missing values (None, NaN) are refused: a cell without a label cannot be scored.
    """
    if isinstance(values, np.ndarray) and values.dtype.kind in "biuU":
        # Integers, booleans and fixed-width strings cannot be missing, and np.unique sorts them
        # as pandas.Categorical does: no pandas import for the report step's integer codes.
        arr = _one_value_per_cell(values, name)
        _check_length(len(arr), n_cells, name)
        categories, codes = np.unique(arr, return_inverse=True)
        return codes.reshape(-1).astype(np.int64), categories

    import pandas as pd

    if isinstance(values, (pd.Series, pd.Index)):
        values = values.array
    if not isinstance(values, pd.Categorical):
        values = pd.Categorical(_one_value_per_cell(values, name))
    else:  # keep its categories (the codes' order does not change any metric), minus unused ones
        values = values.remove_unused_categories()
    _check_length(len(values), n_cells, name)
    codes = np.asarray(values.codes, dtype=np.int64)
    missing = codes < 0
    if missing.any():
        first = int(np.flatnonzero(missing)[0])
        raise MetricInputError(
            f"{name} is missing (None/NaN) for {int(missing.sum())} of {len(codes)} cells (first at row {first}); "
            "fill them in or drop those cells before computing metrics."
        )
    return codes, np.asarray(values.categories)


def _one_value_per_cell(values, name: str) -> np.ndarray:
    """``values`` as a 1-D array (a single row or column is flattened), or an error."""
    arr = np.asarray(values)
    if arr.ndim == 2 and 1 in arr.shape:
        arr = arr.reshape(-1)
    if arr.ndim != 1:
        raise MetricInputError(f"{name} must be 1-D (one value per cell); got shape {np.shape(values)}.")
    return arr


def _check_length(n_values: int, n_cells: int | None, name: str) -> None:
    if n_cells is not None and n_values != n_cells:
        raise MetricInputError(
            f"{name} has {n_values} values but the embedding has {n_cells} cells (rows); "
            f"pass one {name} value per cell, in the embedding's row order."
        )


def check_same_cells(n_a: int, n_b: int, name_a: str, name_b: str) -> None:
    """Refuse two arrays that do not describe the same cells."""
    if n_a != n_b:
        raise MetricInputError(
            f"{name_a} has {n_a} cells (rows) but {name_b} has {n_b}; "
            "both must describe the same cells in the same order."
        )
