"""Step 1, register: an .h5ad file -> ``registry.json`` (setup, category mappings, genes, checks)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from snakevi.steps._io import StepError, read_h5ad

log = logging.getLogger(__name__)


def register(
    h5ad: str | os.PathLike,
    registry_out: str | os.PathLike,
    *,
    layer: str | None = None,
    batch_key: str | None = None,
    labels_key: str | None = None,
    unlabeled_category: str | None = None,
    size_factor_key: str | None = None,
    categorical_covariate_keys: list[str] | None = None,
    continuous_covariate_keys: list[str] | None = None,
    n_top_genes: int | None = None,
    hvg_flavor: str = "seurat_v3",
    genes: str | os.PathLike | None = None,
    missing_labels: str = "error",
    model_name: str = "SCVI",
) -> dict:
    """Validate a dataset and write its registry as JSON.

    Parameters
    ----------
    h5ad
        Input AnnData file with raw counts in ``X`` or ``layers[layer]``. Never modified.
    registry_out
        Where to write the registry (atomically).
    layer, batch_key, labels_key, unlabeled_category, size_factor_key, categorical_covariate_keys, continuous_covariate_keys
        As :func:`snakevi.data.setup_anndata` (``unlabeled_category``: the label value of cells
        whose label is unknown, for scANVI; it becomes the last label category).
    n_top_genes
        Keep only this many highly variable genes, chosen on the counts per batch
        (see :mod:`snakevi.data.hvg`); ``None`` keeps every gene. The choice is recorded in the
        registry under ``"gene_selection"`` and its genes are the registry's ``var_names``.
    hvg_flavor
        scanpy's flavour of that selection, with scanpy 1.11's gene set: ``"seurat_v3"``
        (scanpy's default for counts), ``"seurat_v3_paper"``, ``"cell_ranger"`` or ``"seurat"``
        (these two on log1p(CP10k) of the counts, made here). ``batch_key`` is scanpy's.
    genes
        A text file of the genes to keep, one ``var_name`` per line (blank lines and lines
        starting with ``#`` are skipped); they keep the dataset's order. Every listed gene must
        be in the dataset. Not with ``n_top_genes``. Recorded under ``"gene_selection"``.
    missing_labels
        Cells with no label (NaN in ``labels_key``): ``"error"`` refuses them, ``"unlabeled"``
        labels them ``unlabeled_category``, ``"drop"`` leaves them out (see
        :mod:`snakevi.data.missing_labels`; the rule is recorded in the registry).
    model_name
        Model the data is set up for.

    Returns
    -------
    dict
        The registry written.
    """
    from snakevi.data import RegistrationError, registry_to_json, setup_anndata

    adata = read_h5ad(h5ad)
    log.info("read %s: %d cells x %d genes", h5ad, adata.n_obs, adata.n_vars)
    cat_keys = list(categorical_covariate_keys or []) or None
    cont_keys = list(continuous_covariate_keys or []) or None
    if unlabeled_category is not None and labels_key is None:
        raise StepError(f"{h5ad}: setup.unlabeled_category={unlabeled_category!r} needs setup.labels_key, the obs "
                        "column it is a value of.")
    adata, labels_rule = _missing_labels(adata, missing_labels, labels_key, unlabeled_category, h5ad)
    setup = dict(layer=layer, batch_key=batch_key, labels_key=labels_key, size_factor_key=size_factor_key,
                 unlabeled_category=unlabeled_category,
                 categorical_covariate_keys=cat_keys, continuous_covariate_keys=cont_keys)
    if genes is not None and n_top_genes is not None:
        raise StepError(f"setup.genes ({genes}) and setup.n_top_genes ({n_top_genes}) both choose the genes; "
                        "give one of them.")
    from snakevi.data.hvg import HVG_FLAVORS

    if hvg_flavor not in HVG_FLAVORS:
        raise StepError(f"setup.hvg_flavor={hvg_flavor!r} is not one of scanpy's flavours: "
                        f"{', '.join(HVG_FLAVORS)} (seurat_v3 is scanpy's default for counts).")
    selection = None
    try:
        if genes is not None:
            setup_anndata(adata, model_name=model_name, **setup)  # the full data's checks first
            adata, selection = _listed_genes(adata, genes, h5ad)
        elif n_top_genes is not None:
            # Validate the full data first, so bad counts are reported before any selection.
            setup_anndata(adata, model_name=model_name, **setup)
            adata, selection = _select_genes(adata, int(n_top_genes), layer, batch_key, h5ad, hvg_flavor)
        registry = setup_anndata(adata, model_name=model_name, **setup)
    except RegistrationError as err:
        raise StepError(f"{h5ad}: {err}") from err
    if selection is not None:
        registry["gene_selection"] = selection
    if labels_rule is not None:
        registry["missing_labels"] = labels_rule
    n_zero_genes = registry["validation"]["n_genes_zero_counts"]
    if n_zero_genes:
        # Kept on purpose: such a gene costs a little time but cannot harm the fit (the model
        # learns it is never expressed), and dropping it would change the gene list silently.
        log.warning(
            "%d of %d genes have zero counts in every cell of %s; they are kept (the registry records "
            "the number under validation.n_genes_zero_counts). Filter them first (e.g. "
            "scanpy.pp.filter_genes(adata, min_counts=1)) or set setup.n_top_genes to leave them out.",
            n_zero_genes, registry["summary"]["n_vars"], h5ad)
    Path(registry_out).parent.mkdir(parents=True, exist_ok=True)
    registry_to_json(registry, registry_out)
    s = registry["summary"]
    log.info("registered %d cells x %d genes, %d batches, %d labels -> %s",
             s["n_obs"], s["n_vars"], s["n_batch"], s["n_labels"], registry_out)
    return registry


def _select_genes(adata, n_top_genes: int, layer, batch_key, source, flavor: str = "seurat_v3"):
    """Subset ``adata`` to its ``n_top_genes`` highly variable genes (original gene order)."""
    from snakevi.data.counts import get_count_matrix
    from snakevi.data.hvg import highly_variable_genes

    if n_top_genes < 1 or n_top_genes > adata.n_vars:
        raise StepError(
            f"setup.n_top_genes={n_top_genes} but {source} has {adata.n_vars} genes; choose a value "
            f"between 1 and {adata.n_vars}, or null to keep every gene."
        )
    X = get_count_matrix(adata, layer)
    batches = None if batch_key is None else adata.obs[batch_key].astype(str).to_numpy()
    result = highly_variable_genes(X, n_top_genes, batches, flavor=flavor, gene_names=adata.var_names)
    keep = result["selected"]
    sub = adata[:, keep].copy()
    totals = np.asarray(get_count_matrix(sub, layer).sum(axis=1)).ravel()
    empty = np.flatnonzero(totals == 0)
    if empty.size:
        raise StepError(
            f"{source}: after keeping the {n_top_genes} most variable genes, {empty.size} cell(s) have "
            f"zero counts (e.g. {list(sub.obs_names[empty[:5]])}). Raise setup.n_top_genes, or filter "
            "those low-count cells from the dataset first."
        )
    log.info("kept %d highly variable genes of %d (scanpy flavor %s, %d batch(es))",
             keep.size, adata.n_vars, flavor, result["n_batches_used"])
    selection = {
        "method": f"scanpy_{flavor}",
        "flavor": flavor,
        "n_top_genes": n_top_genes,
        "n_genes": int(keep.size),
        "batch_key": batch_key,
        "n_vars_input": int(adata.n_vars),
        "n_batches_used": int(result["n_batches_used"]),
    }
    return sub, selection


def _listed_genes(adata, genes_file, source):
    """Subset ``adata`` to the genes listed in ``genes_file`` (in the dataset's order)."""
    path = Path(genes_file)
    if not path.is_file():
        raise StepError(f"setup.genes: the gene list {str(path)!r} is not a file; give the path of a text file "
                        "with one gene name per line.")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as err:
        raise StepError(f"setup.genes: {path} is not a UTF-8 text file ({err}); write one gene name per line.") from err
    listed = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    if not listed:
        raise StepError(f"setup.genes: {path} lists no genes; write one var_name per line.")
    repeated = sorted({g for g in listed if listed.count(g) > 1})
    if repeated:
        raise StepError(f"setup.genes: {path} lists {repeated[:5]} more than once; list each gene once.")
    names = adata.var_names.astype(str)
    missing = [g for g in listed if g not in set(names)]
    if missing:
        raise StepError(
            f"setup.genes: {len(missing)} of the {len(listed)} genes in {path} are not var_names of {source} "
            f"(e.g. {missing[:5]}); the list must name genes of the dataset (check the gene identifiers: "
            "symbols or Ensembl IDs)."
        )
    keep = names.isin(listed)
    log.info("kept the %d genes listed in %s (of %d)", int(keep.sum()), path, adata.n_vars)
    selection = {"method": "gene_list", "path": str(path), "n_genes": int(keep.sum()),
                 "n_vars_input": int(adata.n_vars)}
    return adata[:, keep].copy(), selection


def _missing_labels(adata, mode: str, labels_key, unlabeled_category, source):
    """``adata`` with ``setup.missing_labels`` applied, and the rule to record (or ``None``)."""
    from snakevi.data.missing_labels import (MISSING_LABELS, apply_missing_labels_to_anndata, missing_label_mask,
                                             missing_labels_rule)

    if mode not in MISSING_LABELS:
        raise StepError(f"setup.missing_labels={mode!r}; use one of {list(MISSING_LABELS)}.")
    if mode == "error":
        return adata, None
    if labels_key is None:
        raise StepError(f"setup.missing_labels={mode!r} needs setup.labels_key, the obs column whose missing "
                        "values it handles.")
    if mode == "unlabeled" and unlabeled_category is None:
        raise StepError("setup.missing_labels='unlabeled' needs setup.unlabeled_category, the label the cells "
                        "without one get (e.g. 'Unknown').")
    n_missing = int(missing_label_mask(adata.obs, labels_key).sum()) if labels_key in adata.obs.columns else 0
    rule = missing_labels_rule(mode, labels_key, unlabeled_category, n_missing)
    if mode == "drop" and n_missing == adata.n_obs:
        raise StepError(f"{source}: every cell has a missing {labels_key!r}; setup.missing_labels='drop' "
                        "would leave none.")
    adata, _ = apply_missing_labels_to_anndata(adata, rule)
    verb = "dropped" if mode == "drop" else f"labelled {unlabeled_category!r}"
    log.info("%d cell(s) of %s have no %s: %s (setup.missing_labels=%s)", n_missing, source, labels_key, verb, mode)
    return adata, rule
