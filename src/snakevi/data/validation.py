"""Checks on an AnnData's names and ``obs`` columns before it is registered.

Every check raises :class:`RegistrationError` with what was wrong, where (key, value, cell) and
what to do about it. The count matrix itself is checked in :mod:`snakevi.data.counts`.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

if TYPE_CHECKING:  # pandas comes with the AnnData these checks look at; the train job needs neither
    import pandas as pd

#: How many example names an error message shows.
_N_EXAMPLES = 5


class RegistrationError(ValueError):
    """The AnnData cannot be registered as it is; the message says why and how to fix it."""


def examples(values: Sequence[Any], n: int = _N_EXAMPLES) -> str:
    """``'a', 'b', 'c' (and 7 more)``: a short, quoted preview of a list for error messages."""
    values = list(values)
    shown = ", ".join(repr(_plain(v)) for v in values[:n])
    more = len(values) - n
    return f"{shown} (and {more} more)" if more > 0 else shown


def _plain(value: Any) -> Any:
    """numpy scalars -> Python scalars, so messages read ``'a'`` rather than ``np.str_('a')``."""
    return value.item() if isinstance(value, np.generic) else value


def check_not_empty(adata) -> None:
    """Refuse an AnnData without cells or without genes."""
    if adata.n_obs == 0 or adata.n_vars == 0:
        raise RegistrationError(
            f"The AnnData is empty ({adata.n_obs} cells x {adata.n_vars} genes); "
            "register data with at least one cell and one gene (check the filtering that produced it)."
        )


def check_unique_names(adata) -> None:
    """Refuse duplicated ``var_names`` or ``obs_names``: genes and cells are addressed by name."""
    for axis, names, fix in (
        ("var_names", adata.var_names, "adata.var_names_make_unique()"),
        ("obs_names", adata.obs_names, "adata.obs_names_make_unique()"),
    ):
        if not names.is_unique:
            dups = names[names.duplicated()].unique()
            raise RegistrationError(
                f"adata.{axis} has {len(dups)} duplicated name(s): {examples(dups)}. "
                f"Make them unique, e.g. with {fix}, before setup_anndata."
            )


def check_obs_key(adata, key: str, role: str) -> None:
    """Refuse an ``obs`` key that is not a column, listing the columns that exist."""
    if not isinstance(key, str):
        raise RegistrationError(f"{role} must be a column name (str) of adata.obs, got {key!r}.")
    if key not in adata.obs.columns:
        cols = list(adata.obs.columns)
        listed = examples(cols, n=30) if cols else "none"
        raise RegistrationError(
            f"{role}={key!r} is not a column of adata.obs. Available columns: {listed}. "
            f"Pass one of them as {role}, or add the column to adata.obs first."
        )


def categorical_mapping(adata, key: str, role: str, *, warn_small: bool = True) -> list:
    """Categories of ``adata.obs[key]`` in pandas' order, as JSON-native values.

    The order is that of ``adata.obs[key].astype("category").cat.categories``, as in scvi-tools:
    an existing categorical keeps its categories (unused ones included), anything else gets its
    sorted unique values. Missing values are refused because they would get code -1. With
    ``warn_small``, a category with fewer than 3 cells gets a warning (as in scvi-tools).
    """
    check_obs_key(adata, key, role)
    column = adata.obs[key]
    missing = column.isna().to_numpy()
    if missing.any():
        names = adata.obs_names[missing]
        raise RegistrationError(
            f"adata.obs[{key!r}] ({role}) has {int(missing.sum())} missing value(s) (NaN/None), "
            f"e.g. in cells {examples(names)}. "
            + ("In the workflow, set setup.missing_labels: unlabeled (with setup.unlabeled_category) to "
               "give them the unlabelled category, or drop to leave them out. " if role == "labels_key" else "")
            + "Fill them with a category of their own, e.g. "
            f"adata.obs[{key!r}] = adata.obs[{key!r}].astype('category')"
            ".cat.add_categories('unknown').fillna('unknown'), or drop those cells."
        )
    cats = column.astype("category").cat.categories.tolist()
    bad = [c for c in cats if not isinstance(c, (str, int, float, bool))]
    if bad:
        raise RegistrationError(
            f"adata.obs[{key!r}] ({role}) has categories of type {type(bad[0]).__name__} "
            f"({examples(bad)}), which a JSON registry cannot hold. Convert the column to strings: "
            f"adata.obs[{key!r}] = adata.obs[{key!r}].astype(str)."
        )
    if warn_small:
        _warn_small_categories(column, key)
    return cats


def _warn_small_categories(column: pd.Series, key: str) -> None:
    # scvi-tools warns here too: a category with one or two cells can break BatchNorm and
    # gives the model almost nothing to learn that category's effect from.
    counts = column.value_counts(sort=False)
    counts = counts[counts > 0]
    if len(counts) and counts.min() < 3:
        warnings.warn(
            f"Category {_plain(counts.idxmin())!r} of adata.obs[{key!r}] has only {int(counts.min())} "
            "cell(s); models may not train properly on it.",
            UserWarning,
            stacklevel=6,  # the caller of setup_anndata
        )


def numeric_column(adata, key: str, role: str, *, positive: bool = False) -> np.ndarray:
    """``adata.obs[key]`` as float64, refusing non-numeric, non-finite (and, if asked, <= 0) values."""
    import pandas as pd

    check_obs_key(adata, key, role)
    column = adata.obs[key]
    if not (pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column)):
        raise RegistrationError(
            f"adata.obs[{key!r}] ({role}) must be numeric, but has dtype {column.dtype}. "
            "Convert it with pd.to_numeric, or register it as a categorical covariate instead."
        )
    values = column.to_numpy(dtype=np.float64, na_value=np.nan)
    bad = ~np.isfinite(values)
    what = "NaN or infinite"
    if positive:
        bad |= values <= 0
        what = "zero, negative, NaN or infinite"
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        fix = (
            "Size factors multiply the expected counts, so each must be a positive finite number; "
            "recompute them (e.g. total counts / median total counts) or drop those cells."
            if positive
            else "Fill or drop those cells, or leave the column out."
        )
        raise RegistrationError(
            f"adata.obs[{key!r}] ({role}) has {int(bad.sum())} {what} value(s), the first in cell "
            f"{adata.obs_names[first]!r} (value {values[first]!r}). {fix}"
        )
    return values


def check_key_list(keys, role: str) -> list[str]:
    """``None`` -> ``[]``; a single string -> one-element list; refuse duplicates."""
    if keys is None:
        return []
    if isinstance(keys, str):
        keys = [keys]
    keys = list(keys)
    dups = sorted({k for k in keys if keys.count(k) > 1})
    if dups:
        raise RegistrationError(f"{role} lists {examples(dups)} more than once; give each key once.")
    return keys
