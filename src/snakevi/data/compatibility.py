"""Does this data fit this registry? One check for every place a saved setup meets data.

A trained model means something only for data laid out as its registry says: the same genes
in the same order, the counts where the registry reads them, and only batch, label and
covariate values it has codes for. :func:`check_compatible` is that check, for the three
kinds of data a saved registry meets:

- an **AnnData** (``SCVI.load``, ``transfer_setup``, the export and map_query steps, scArches
  queries): its ``var_names``, the registered layer, the registered ``obs`` columns and the
  values in them;
- a **CellData** or a **registry** (a model loaded onto prepared arrays, ``from_scvi_model``):
  the genes and every category mapping must be the same lists (codes keep their meaning).

The options cover what genuinely differs between callers: extra genes that will be dropped
(``genes="superset"``) or padded (``genes="skip"``), new categories that will be appended
(``new_categories``) and scArches queries (``query``: labels may be missing or unknown when the
registry has an unlabeled category; hints point to ``prepare_query_anndata``).
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Literal

from snakevi._constants import REGISTRY_KEYS as K
from snakevi.data.validation import RegistrationError, examples

#: ``fields`` entries that hold one categorical mapping, with their ``setup_args`` role.
_CATEGORICAL_FIELDS = ((K.BATCH_KEY, "batch_key"), (K.LABELS_KEY, "labels_key"))


def check_compatible(
    saved: dict,
    data,
    *,
    genes: Literal["same", "superset", "skip"] = "same",
    new_categories: bool | Collection[str] = False,
    query: bool = False,
    labels: bool = True,
    owner: str = "the model",
    context: str = "",
) -> None:
    """Refuse ``data`` that does not fit the registry ``saved``, saying what differs and what to do.

    Parameters
    ----------
    saved
        The registry the model was set up with (``model.registry``, ``model.json``'s ``registry``).
    data
        An AnnData, a :class:`~snakevi.data.CellData` or another registry (dict).
    genes
        ``"same"``: the registry's genes in the registry's order. ``"superset"``: every registry
        gene, in any order, extra genes allowed (the caller subsets to the registry's genes).
        ``"skip"``: not checked (the caller pads or subsets them, e.g. ``prepare_query_anndata``).
    new_categories
        ``True``: batch, label and categorical covariate values the registry does not know are
        allowed (they are appended to the mappings); a collection of field names (``"batch"``,
        ``"labels"``, ``"extra_categorical_covs"``) allows them only there. Labels never grow
        when the registry has an unlabeled category (scvi-tools' rule).
    query
        The data is a scArches query (``load_query_data``): with an unlabeled category in the
        registry its labels column may be missing and unknown labels are allowed (both become
        the unlabeled category); without one unknown labels are refused. Gene hints point to
        ``prepare_query_anndata``.
    labels
        Compare the label mappings of two registries (``False`` for ``from_scvi_model``, whose
        labels are new by design). AnnData labels are always checked.
    owner
        How messages name the model, e.g. ``"the reference model"``.
    context
        Text put before every message (e.g. ``"from_scvi_model: "``).

    Raises
    ------
    RegistrationError
        On the first difference: genes (missing, extra, order), the counts layer, a missing
        ``obs`` column, or category values the registry has no code for.

    Examples
    --------
    >>> from snakevi.data import setup_anndata, simulate
    >>> from snakevi.data.compatibility import check_compatible
    >>> adata = simulate(n_cells=50, n_genes=10)
    >>> registry = setup_anndata(adata, batch_key="batch")
    >>> check_compatible(registry, adata)  # the data it was set up on fits
    >>> check_compatible(registry, adata[:, ::-1])
    Traceback (most recent call last):
    ...
    snakevi.data.validation.RegistrationError: The data has the model's 10 genes but in a different order. ...
    """
    try:
        if isinstance(data, dict) or _is_celldata(data):
            _check_registries(saved, data if isinstance(data, dict) else data.registry, labels=labels, owner=owner)
        else:
            _check_anndata(saved, data, genes=genes, new_categories=new_categories, query=query, owner=owner)
    except RegistrationError as err:
        if not context:
            raise
        raise RegistrationError(f"{context}{err}") from err


def unseen_categories(saved: dict, adata, field: str = K.BATCH_KEY, cov_key: str | None = None) -> list:
    """Values of ``adata``'s column for ``field`` (or covariate ``cov_key``) that ``saved`` has no code for.

    Sorted as scvi-tools appends them (``np.unique``); empty when the field has no ``obs`` key
    or the column is absent.
    """
    fields = saved["fields"]
    if cov_key is None:
        key, known = fields[field]["original_key"], fields[field]["categorical_mapping"]
    else:
        key, known = cov_key, fields[K.CAT_COVS_KEY]["mappings"][cov_key]
    if key is None or key not in adata.obs.columns:
        return []
    return unseen_values(adata.obs[key], list(known))


def unseen_values(column, known: list, cats: list | None = None) -> list:
    """Values of ``column`` not in ``known``, sorted as scvi-tools appends them (``np.unique``)."""
    # Only values present in cells count: a categorical column may carry unused categories.
    observed = column.dropna().unique().tolist()
    known_set = set(known)
    unseen = list(dict.fromkeys(c for c in observed if c not in known_set))
    try:
        return sorted(unseen)
    except TypeError:  # mixed types cannot be sorted: keep the column's category order
        order = {c: i for i, c in enumerate(cats or observed)}
        return sorted(unseen, key=lambda c: order.get(c, len(order)))


def registry_unlabeled_category(registry: dict):
    """The registry's unlabeled category (SCANVI's ``unlabeled_category``), or ``None``."""
    field = registry["fields"].get(K.LABELS_KEY, {})
    if field.get("unlabeled_category") is not None:
        return field["unlabeled_category"]
    return (registry.get("setup_args") or {}).get("unlabeled_category")


def check_gene_overlap(n_found: int, n_ref: int, query_names, ref_names, min_gene_overlap: float) -> None:
    """Refuse a query with no reference gene, or fewer than ``min_gene_overlap`` of them."""
    if n_found == 0:
        raise RegistrationError(
            f"None of the reference's {n_ref} genes is among the query's {len(query_names)} var_names "
            f"(reference e.g. {examples(ref_names)}; query e.g. {examples(query_names)}). "
            "Both must name genes the same way (e.g. both gene symbols or both Ensembl IDs)."
        )
    if n_found < min_gene_overlap * n_ref:
        raise RegistrationError(
            f"Only {n_found} of the reference's {n_ref} genes ({n_found / n_ref:.1%}) are in the query; "
            f"at least {min_gene_overlap:.0%} are required (min_gene_overlap={min_gene_overlap}). The missing "
            "genes would be padded with zeros, which the model reads as no expression. Use a query measured "
            "on the same genes, or lower min_gene_overlap to map it anyway."
        )


# ---- AnnData -----------------------------------------------------------------------------
def _check_anndata(saved, adata, *, genes, new_categories, query, owner) -> None:
    fields = saved["fields"]
    if genes != "skip":
        _check_genes([str(g) for g in adata.var_names], list(fields[K.X_KEY]["column_names"]),
                     superset=genes == "superset", query=query, owner=owner)
    layer = fields[K.X_KEY].get("attr_key")
    if layer is not None and layer not in adata.layers:
        have = examples(list(adata.layers)) if len(adata.layers) else "none"
        raise RegistrationError(
            f"The data has no adata.layers[{layer!r}], where {owner} reads its counts (layers: {have}). "
            f"Put the raw counts in adata.layers[{layer!r}]."
        )
    unlabeled = registry_unlabeled_category(saved)
    growable = _growable(new_categories)
    for field, role in _CATEGORICAL_FIELDS:
        key, known = fields[field]["original_key"], list(fields[field]["categorical_mapping"])
        if field == K.LABELS_KEY and query and unlabeled is not None:
            continue  # a missing column or unknown labels become the unlabeled category
        if field == K.LABELS_KEY:
            may_grow = field in growable and unlabeled is None and not query
        else:
            may_grow = field in growable
        _check_column(adata, key, role, known, may_grow=may_grow, query=query, owner=owner)
    cats = fields[K.CAT_COVS_KEY]
    for key in cats["field_keys"]:
        _check_column(adata, key, "categorical_covariate_keys", list(cats["mappings"][key]),
                      may_grow=K.CAT_COVS_KEY in growable, query=query, owner=owner)
    numeric = [(fields[K.SIZE_FACTOR_KEY]["original_key"], "size_factor_key")]
    numeric += [(key, "continuous_covariate_keys") for key in fields[K.CONT_COVS_KEY]["columns"]]
    for key, role in numeric:
        if key is not None:
            _check_column(adata, key, role, None, may_grow=True, query=query, owner=owner)


def _growable(new_categories) -> set[str]:
    if new_categories is True:
        return {K.BATCH_KEY, K.LABELS_KEY, K.CAT_COVS_KEY}
    return set(new_categories or ())


def _check_column(adata, key, role, known, *, may_grow, query, owner) -> None:
    """The ``obs`` column ``key`` exists and (for a categorical one) has only ``known`` values."""
    if key is None:
        return
    if key not in adata.obs.columns:
        cols = list(adata.obs.columns)
        if role == "batch_key":
            hint = f"Give every cell its batch, e.g. adata.obs[{key!r}] = 'query' for data from a single batch."
        else:
            hint = f"Add the column (values {owner} knows: {examples(known)})." if known else "Add the column."
        raise RegistrationError(
            f"The data has no adata.obs[{key!r}] column, {owner}'s {role.replace('_', ' ')} ({role}); obs has "
            f"{examples(cols, n=10) if cols else 'no columns'}. {hint}"
        )
    if known is None or may_grow:
        return
    column = adata.obs[key]
    unseen = unseen_values(column, known)
    if not unseen:
        return
    n_cells = int(column.isin(unseen).sum())
    noun = "label(s)" if role == "labels_key" else ("category" if len(unseen) == 1 else "categories")
    if role == "labels_key" and query:
        hint = (f"{owner[0].upper()}{owner[1:]} has no unlabeled category to put them in: rename them to known "
                "labels, drop those cells, or set up the reference without labels_key.")
    else:
        hint = ("Rename them to known categories, drop those cells, or add them with transfer_setup(adata, "
                "registry, extend_categories=True) (the model then needs to learn the new categories, e.g. "
                "scArches-style fine-tuning with load_query_data).")
    raise RegistrationError(
        f"adata.obs[{key!r}] ({role}) has {n_cells} cell(s) with {len(unseen)} {noun} {owner} does not know: "
        f"{examples(unseen)}. Known categories: {examples(known, n=10)}. {hint}"
    )


def _check_genes(have: list[str], want: list[str], *, superset: bool, query: bool, owner: str) -> None:
    """``have`` (the data's var_names) against ``want`` (the registry's genes)."""
    if have == want:
        return
    have_set, want_set = set(have), set(want)
    missing = [g for g in want if g not in have_set]
    if superset and not missing:
        return
    if query and len(missing) == len(want):
        check_gene_overlap(0, len(want), have, want, 0.0)
    extra = [g for g in have if g not in want_set]
    if query:
        hint = ("Call prepare_query_anndata(adata, reference) first (it reorders, pads missing genes with zeros "
                "and drops extra ones)" + ("." if missing else ", or pass inplace_subset_query_vars=True."))
    elif not missing and not extra:
        hint = "Reorder them: adata = adata[:, registry['fields']['X']['column_names']].copy()."
    else:
        hint = (f"Use the dataset the model was trained on, or subset the data to {owner}'s genes in {owner}'s "
                "order (adata[:, registry['fields']['X']['column_names']]); genes it lacks must be added "
                "(as zero-count columns) first.")
    if not missing and not extra:
        raise RegistrationError(f"The data has {owner}'s {len(want)} genes but in a different order. {hint}")
    parts = []
    if missing:
        parts.append(f"{len(missing)} of {owner}'s {len(want)} genes are missing (the data lacks {len(missing)} "
                     f"of {owner}'s genes, e.g. {examples(missing)})")
    if extra:
        parts.append(f"{len(extra)} genes are not {owner}'s (e.g. {examples(extra)})")
    raise RegistrationError(
        f"The data's genes differ from the {len(want)} genes {owner} was set up with ({len(missing)} missing, "
        f"{len(extra)} extra): {'; '.join(parts)}. {hint}"
    )


# ---- registry against registry -------------------------------------------------------------
def _check_registries(saved: dict, given: dict, *, labels: bool, owner: str) -> None:
    a, b = saved["fields"], given["fields"]
    _check_genes(list(b[K.X_KEY]["column_names"]), list(a[K.X_KEY]["column_names"]),
                 superset=False, query=False, owner=owner)
    pairs = [("batch", a[K.BATCH_KEY]["categorical_mapping"], b[K.BATCH_KEY]["categorical_mapping"])]
    if labels:
        pairs.append(("labels", a[K.LABELS_KEY]["categorical_mapping"], b[K.LABELS_KEY]["categorical_mapping"]))
    keys_a, keys_b = list(a[K.CAT_COVS_KEY]["field_keys"]), list(b[K.CAT_COVS_KEY]["field_keys"])
    cont_a, cont_b = list(a[K.CONT_COVS_KEY]["columns"]), list(b[K.CONT_COVS_KEY]["columns"])
    for what, known, have in (("categorical", keys_a, keys_b), ("continuous", cont_a, cont_b)):
        if known != have:
            raise RegistrationError(
                f"The data's {what} covariates {have} differ from {owner}'s {known}; register the data with "
                f"{owner}'s setup (transfer_setup) or use the data {owner} was trained on."
            )
    pairs += [(f"categorical covariate {k!r}", a[K.CAT_COVS_KEY]["mappings"][k], b[K.CAT_COVS_KEY]["mappings"][k])
              for k in keys_a]
    for what, known, have in pairs:
        if list(known) != list(have):
            raise RegistrationError(
                f"The data's {what} categories {list(have)[:5]} differ from {owner}'s {list(known)[:5]}; "
                f"use the data {owner} was trained on (or the same categories, in the same order)."
            )


def _is_celldata(data) -> bool:
    from snakevi.data.celldata import CellData

    return isinstance(data, CellData)
