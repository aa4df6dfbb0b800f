"""The registry: a plain JSON document that says how an AnnData maps to minibatch tensors.

``setup_anndata`` validates the AnnData and writes the registry into
``adata.uns["_snakevi_registry"]`` as a JSON string (so it survives ``write_h5ad``); nothing is
kept anywhere else, and ``adata.obs`` is left untouched. Layout (format version 1)::

    {"format_version": 1, "snakevi_version": "0.1.0", "model_name": "SCVI",
     "setup_method_name": "setup_anndata",
     "setup_args": {"layer": None, "batch_key": "batch", "labels_key": None, ...},
     "fields": {
        "X": {"attr_name": "X" | "layers", "attr_key": None | layer, "n_obs", "n_vars",
              "column_names": [var_names]},
        "batch":  {"original_key": "batch" | None, "categorical_mapping": [categories]},
        "labels": {"original_key": ..., "categorical_mapping": [...]},
        "size_factor": {"original_key": key | None},
        "extra_categorical_covs": {"field_keys": [...], "mappings": {key: [...]},
                                   "n_cats_per_key": [...]},
        "extra_continuous_covs": {"columns": [...]}},
     "summary": {"n_obs", "n_vars", "n_batch", "n_labels", "n_cats_per_cov",
                 "n_extra_continuous_covs", "has_size_factor"},
     "validation": {"storage_format", "dtype", "total_counts", "n_cells_zero_counts",
                    "n_genes_zero_counts", "max_count", "fraction_nonzero"}}

Without a batch (labels) key every cell gets code 0 and the mapping is ``[0]``, as in
scvi-tools.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from snakevi._atomic import write_text_atomic
from snakevi._constants import ADATA_UNS_REGISTRY_KEY, REGISTRY_FORMAT_VERSION, REGISTRY_KEYS
from snakevi.data import validation as v
from snakevi.data.compatibility import check_compatible, registry_unlabeled_category, unseen_values
from snakevi.data.counts import scan_counts
from snakevi.data.validation import RegistrationError, examples


def setup_anndata(
    adata,
    *,
    layer: str | None = None,
    batch_key: str | None = None,
    labels_key: str | None = None,
    size_factor_key: str | None = None,
    categorical_covariate_keys: list[str] | None = None,
    continuous_covariate_keys: list[str] | None = None,
    unlabeled_category: str | int | float | None = None,
    model_name: str = "SCVI",
) -> dict:
    """Validate ``adata`` and register how it maps to tensors.

    Parameters
    ----------
    adata
        AnnData with raw counts in ``X`` or in ``layers[layer]``.
    layer
        Layer holding the counts; ``None`` uses ``adata.X``.
    batch_key, labels_key
        ``obs`` columns with the batch and the cell label; categories keep pandas' order.
    size_factor_key
        ``obs`` column of positive per-cell size factors (used instead of the observed library).
    categorical_covariate_keys, continuous_covariate_keys
        Extra ``obs`` columns fed to the model as covariates.
    unlabeled_category
        Semi-supervised models (SCANVI): the value of ``labels_key`` that marks unlabelled
        cells. It becomes the last label category (swapped with the last one, or appended
        when no cell has it), as in scvi-tools, and is recorded in ``setup_args`` and
        ``fields["labels"]["unlabeled_category"]``. New data transferred onto such a registry
        never extends the label categories.
    model_name
        Name of the model class the data is set up for (checked by the model).

    Returns
    -------
    dict
        The registry (JSON-serialisable), also stored in ``adata.uns["_snakevi_registry"]``.

    Raises
    ------
    RegistrationError
        When the data cannot be modelled as it is: counts that are not finite non-negative
        integers, a missing key or layer, missing values in a categorical column, non-positive
        size factors, duplicated names, an empty AnnData, or cells with zero total counts.
        scvi-tools only warns on non-integer data and on empty cells; snakevi refuses both,
        because a zero-count cell has log library size -inf and turns the loss into NaN.

    Examples
    --------
    >>> from snakevi.data import setup_anndata, simulate
    >>> adata = simulate(n_cells=200, n_genes=50)
    >>> reg = setup_anndata(adata, batch_key="batch", labels_key="label")
    >>> reg["summary"]["n_batch"]
    2
    """
    setup_args = {
        "layer": layer,
        "batch_key": batch_key,
        "labels_key": labels_key,
        "size_factor_key": size_factor_key,
        "categorical_covariate_keys": _as_list_or_none(categorical_covariate_keys, "categorical_covariate_keys"),
        "continuous_covariate_keys": _as_list_or_none(continuous_covariate_keys, "continuous_covariate_keys"),
    }
    if unlabeled_category is not None:
        setup_args["unlabeled_category"] = _unlabeled_value(unlabeled_category, labels_key)
    registry = _build_registry(adata, setup_args, model_name)
    adata.uns[ADATA_UNS_REGISTRY_KEY] = json.dumps(registry, allow_nan=False)
    return registry


def transfer_setup(
    adata, registry: dict, *, extend_categories: bool = False, allow_missing_labels: bool = False
) -> dict:
    """Register new data with the setup (and category mappings) of an existing registry.

    Used when a trained model meets new data (``model.load``, queries on other cells): the
    genes must be the registry's, in the same order, and every batch, label and categorical
    covariate value must be one the registry knows (codes keep their meaning).

    Parameters
    ----------
    adata
        The new AnnData; it is validated like in :func:`setup_anndata`.
    registry
        The registry of the data the model was set up on.
    extend_categories
        Append unseen categories to the mappings instead of refusing them. They go after the
        known ones, in sorted order (as scvi-tools' ``transfer_fields``), so known codes keep
        their meaning.
    allow_missing_labels
        For query data (scArches, ``load_query_data``): labels are never extended. When the
        registry has an unlabeled category (SCANVI's), a missing labels column is filled with
        it and labels the registry does not know are set to it, in ``adata.obs`` (with a
        warning); without one, unknown labels are an error that names them.

    Returns
    -------
    dict
        The new registry, also stored in ``adata.uns["_snakevi_registry"]``.
    """
    check_registry_format(registry, "the given registry")
    check_compatible(registry, adata, new_categories=extend_categories, query=allow_missing_labels)
    if allow_missing_labels:
        _labels_for_query(adata, registry)
    new = _build_registry(
        adata,
        dict(registry["setup_args"]),
        registry["model_name"],
        source=registry,
        extend_categories=extend_categories,
    )
    adata.uns[ADATA_UNS_REGISTRY_KEY] = json.dumps(new, allow_nan=False)
    return new


def get_registry(adata) -> dict:
    """The registry stored on ``adata`` by :func:`setup_anndata` (or :func:`transfer_setup`)."""
    raw = adata.uns.get(ADATA_UNS_REGISTRY_KEY)
    if raw is None:
        raise RegistrationError(
            f"This AnnData has not been registered (no adata.uns[{ADATA_UNS_REGISTRY_KEY!r}]). "
            "Call setup_anndata first, e.g. SCVI.setup_anndata(adata, batch_key='batch') or "
            "snakevi.data.setup_anndata(adata, ...)."
        )
    registry = json.loads(raw) if isinstance(raw, (str, bytes)) else dict(raw)
    check_registry_format(registry, f"adata.uns[{ADATA_UNS_REGISTRY_KEY!r}]")
    return registry


def registry_to_json(registry: dict, path: str | os.PathLike) -> None:
    """Write ``registry`` to ``path`` atomically (temp file in the same folder, then rename)."""
    check_registry_format(registry, "the registry to write")
    path = Path(path)
    text = json.dumps(registry, indent=1, allow_nan=False)
    write_text_atomic(path, text)


def registry_from_json(path: str | os.PathLike) -> dict:
    """Read a registry written by :func:`registry_to_json`, checking its format version."""
    with open(path, encoding="utf-8") as fh:
        try:
            registry = json.load(fh)
        except json.JSONDecodeError as err:
            raise RegistrationError(f"{path} is not a JSON registry ({err}).") from err
    check_registry_format(registry, str(path))
    return registry


def check_registry_format(registry, source: str) -> None:
    """Refuse a registry written in another format version (``source`` names where it came from)."""
    from snakevi import __version__

    if not isinstance(registry, dict) or "fields" not in registry:
        raise RegistrationError(f"{source} is not a snakevi registry (expected a dict with 'fields').")
    version = registry.get("format_version")
    if version != REGISTRY_FORMAT_VERSION:
        raise RegistrationError(
            f"{source} has registry format_version {version!r} (written by snakevi "
            f"{registry.get('snakevi_version', 'unknown')}); this snakevi ({__version__}) reads format "
            f"{REGISTRY_FORMAT_VERSION}. Register the data again with setup_anndata."
        )


# ---- building ----------------------------------------------------------------------------
def _as_list_or_none(keys, role: str) -> list[str] | None:
    return None if keys is None else v.check_key_list(keys, role)


def _build_registry(adata, setup_args: dict, model_name: str, source: dict | None = None,
                    extend_categories: bool = False) -> dict:
    """Validate ``adata`` against ``setup_args`` and return its registry (see module docstring)."""
    from snakevi import __version__

    v.check_not_empty(adata)
    v.check_unique_names(adata)
    K = REGISTRY_KEYS
    src = (source or {}).get("fields", {})

    def mapping(key, role, field, cov_key=None):
        if key is None:
            return [0]
        # Small categories matter when training; new data for a trained model is often small.
        cats = v.categorical_mapping(adata, key, role, warn_small=source is None)
        if source is None:
            return cats
        known = src[field]["categorical_mapping"] if cov_key is None else src[field]["mappings"][cov_key]
        return _transfer_mapping(adata, key, list(known), extend_categories)

    batch_key, labels_key = setup_args["batch_key"], setup_args["labels_key"]
    batch_map = mapping(batch_key, "batch_key", K.BATCH_KEY)
    unlabeled = setup_args.get("unlabeled_category")
    if unlabeled is None:
        labels_map = mapping(labels_key, "labels_key", K.LABELS_KEY)
    elif source is None:
        labels_map = _unlabeled_last(mapping(labels_key, "labels_key", K.LABELS_KEY), unlabeled)
    else:
        # As scvi-tools: query labels never extend the mapping (the unlabelled code stays last).
        known = list(src[K.LABELS_KEY]["categorical_mapping"])
        v.categorical_mapping(adata, labels_key, "labels_key", warn_small=False)  # validates the column
        labels_map = _transfer_mapping(adata, labels_key, known, False)
    sf_key = setup_args["size_factor_key"]
    if sf_key is not None:
        v.numeric_column(adata, sf_key, "size_factor_key", positive=True)
    cat_keys = setup_args["categorical_covariate_keys"] or []
    cat_maps = {k: mapping(k, "categorical_covariate_keys", K.CAT_COVS_KEY, cov_key=k) for k in cat_keys}
    cont_keys = setup_args["continuous_covariate_keys"] or []
    for key in cont_keys:
        v.numeric_column(adata, key, "continuous_covariate_keys")
    # The count scan is the expensive check, so it runs after the cheap ones.
    layer = setup_args["layer"]
    validation, _ = scan_counts(adata, layer)

    n_obs, n_vars = int(adata.n_obs), int(adata.n_vars)
    fields = {
        K.X_KEY: {
            "attr_name": "X" if layer is None else "layers",
            "attr_key": layer,
            "n_obs": n_obs,
            "n_vars": n_vars,
            "column_names": [str(g) for g in adata.var_names],
        },
        K.BATCH_KEY: {"original_key": batch_key, "categorical_mapping": batch_map},
        K.LABELS_KEY: {"original_key": labels_key, "categorical_mapping": labels_map,
                       **({} if unlabeled is None else {"unlabeled_category": unlabeled})},
        K.SIZE_FACTOR_KEY: {"original_key": sf_key},
        K.CAT_COVS_KEY: {
            "field_keys": list(cat_keys),
            "mappings": cat_maps,
            "n_cats_per_key": [len(cat_maps[k]) for k in cat_keys],
        },
        K.CONT_COVS_KEY: {"columns": list(cont_keys)},
    }
    summary = {
        "n_obs": n_obs,
        "n_vars": n_vars,
        "n_batch": len(batch_map),
        "n_labels": len(labels_map),
        "n_cats_per_cov": [len(cat_maps[k]) for k in cat_keys],
        "n_extra_continuous_covs": len(cont_keys),
        "has_size_factor": sf_key is not None,
    }
    return {
        "format_version": REGISTRY_FORMAT_VERSION,
        "snakevi_version": __version__,
        "model_name": model_name,
        "setup_method_name": "setup_anndata",
        "setup_args": setup_args,
        "fields": fields,
        "summary": summary,
        "validation": validation,
    }


def _unlabeled_value(value, labels_key):
    """``unlabeled_category`` as a JSON-native value; it needs a ``labels_key``."""
    if labels_key is None:
        raise RegistrationError(
            f"unlabeled_category={value!r} was given without labels_key; name the obs column that holds "
            "the cell labels (and the unlabelled marker), e.g. labels_key='cell_type'."
        )
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()  # numpy scalar -> Python scalar
    if not isinstance(value, (str, int, float, bool)):
        raise RegistrationError(
            f"unlabeled_category={value!r} has type {type(value).__name__}; use a string or number "
            "(a value of the labels column)."
        )
    return value


def _unlabeled_last(mapping: list, unlabeled) -> list:
    """Put ``unlabeled`` last: swapped with the last category (scvi-tools' order), or appended."""
    mapping = list(mapping)
    if unlabeled in mapping:
        i = mapping.index(unlabeled)
        mapping[i], mapping[-1] = mapping[-1], mapping[i]
    else:
        mapping.append(unlabeled)
    return mapping


def _transfer_mapping(adata, key, known: list, extend: bool) -> list:
    """The registry's mapping for ``key``, with the unseen categories appended when ``extend``.

    :func:`~snakevi.data.compatibility.check_compatible` has refused unseen categories that
    may not be appended; values outside the mapping cannot be encoded (``CellData`` refuses them).
    """
    return known + unseen_values(adata.obs[key], known) if extend else known


def _labels_for_query(adata, registry: dict) -> None:
    """Query labels: fill a missing column, or unknown labels, with the unlabeled category."""
    import warnings

    import pandas as pd

    field = registry["fields"][REGISTRY_KEYS.LABELS_KEY]
    key, known = field["original_key"], list(field["categorical_mapping"])
    if key is None:
        return
    unlabeled = registry_unlabeled_category(registry)
    if key not in adata.obs.columns:
        if unlabeled is None:
            return  # the registry check names the missing column
        warnings.warn(
            f"The query has no adata.obs[{key!r}] (the reference's labels_key); every cell is set to "
            f"the unlabeled category {unlabeled!r}.",
            UserWarning,
            stacklevel=3,
        )
        cats = known if unlabeled in known else [*known, unlabeled]
        adata.obs[key] = pd.Categorical([unlabeled] * adata.n_obs, categories=cats)
        return
    column = adata.obs[key]
    unseen = unseen_values(column, known)
    if not unseen or unlabeled is None:
        return  # check_compatible refused unknown labels without an unlabeled category to take them
    hit = column.isin(unseen).to_numpy()
    warnings.warn(
        f"{int(hit.sum())} cell(s) of adata.obs[{key!r}] have labels the reference does not know "
        f"({examples(unseen)}); they are set to the unlabeled category {unlabeled!r} in adata.obs[{key!r}] "
        "(copy the column first to keep the original labels).",
        UserWarning,
        stacklevel=3,
    )
    values = column.astype(object).to_numpy(copy=True)
    values[hit] = unlabeled
    present = set(values.tolist())
    cats = [c for c in known if c in present]
    adata.obs[key] = pd.Categorical(values, categories=cats if unlabeled in cats else [*cats, unlabeled])
