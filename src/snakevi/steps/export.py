"""Step 4, export: model + .h5ad -> ``embedding.h5ad`` with the latent space (and expression).

The written AnnData holds the input's ``obs``, the registered genes' ``var`` and their counts in
``X`` (or in the registered layer) (so ``SCVI.load(model_dir, anndata.read_h5ad(embedding))`` works on it directly), the
latent representation in ``obsm[latent_key]``, optionally the denoised normalised expression in
``layers[normalized_layer]``, and the registry in ``uns``.
"""

from __future__ import annotations

import logging
import os

import numpy as np

from snakevi.steps._io import StepError, read_h5ad, read_latent, write_h5ad_atomic

log = logging.getLogger(__name__)


def export(
    model_dir: str | os.PathLike,
    h5ad: str | os.PathLike,
    embedding_out: str | os.PathLike,
    *,
    latent: str | os.PathLike | None = None,
    latent_key: str | None = None,
    predicted_key: str = "C_scANVI",
    normalized_layer: str | None = None,
    library_size: float = 1e4,
    full_anndata: bool = False,
    batch_size: int = 1024,
    threads: int | None = None,
):
    """Write the embedding of every cell of ``h5ad`` under the trained model in ``model_dir``.

    Parameters
    ----------
    model_dir
        A model folder written by the train step (``SCVI.save``).
    h5ad
        The dataset (same cells and genes as at registration; extra genes are dropped).
    embedding_out
        The .h5ad file to write (atomically).
    latent
        The train step's ``latent.npy`` (the latent representation of the same cells). Given it,
        and without ``normalized_layer``, the export neither loads the model nor imports torch;
        otherwise the latent representation is computed here.
    latent_key
        ``obsm`` key of the latent representation; ``None``: the model class's (``X_scVI``,
        ``X_scANVI``, ... : its ``latent_key``).
    predicted_key
        For a model that predicts labels (scANVI: its class's ``predicts_labels``): ``obs`` key
        of the predicted labels (their probability goes to ``obs[predicted_key + "_probability"]``).
        Such a model is always loaded (torch).
    normalized_layer
        If given, also store ``get_normalized_expression(library_size=...)`` (dense float32,
        cells x genes) in this layer; its posterior sample is seeded with the model's seed.
    library_size
        Scale of the normalised expression (1e4: counts per 10,000).
    full_anndata
        Write the outputs (``obsm[latent_key]``, predicted labels) into a copy of the whole
        input AnnData, with all its genes, layers, ``obs``, ``obsm`` and ``uns``, instead of an
        AnnData of the registered genes, so it drops into the pipeline that made it. The
        model's registry is then not stored (load the model on ``adata[:, model genes]``).
        Not with ``normalized_layer`` (that layer has the registered genes only).
    batch_size
        Cells per inference minibatch.
    threads
        torch CPU threads.

    Returns
    -------
    anndata.AnnData
        The object written.
    """
    import anndata

    from snakevi.data.compatibility import check_compatible
    from snakevi.data.counts import get_count_matrix
    from snakevi.data.validation import RegistrationError
    from snakevi.model.bundle import read_meta
    from snakevi.model.registry import saved_model_class

    # The cheap checks (model.json, the dataset's genes and categories) come before torch is even imported.
    if full_anndata and normalized_layer:
        raise StepError(
            f"export.full_anndata and export.normalized_layer ({normalized_layer!r}) cannot go together: the "
            "normalized expression covers the model's genes only, not every gene of the full AnnData. "
            "Drop one of the two (the embedding .h5ad without full_anndata holds both)."
        )
    meta = read_meta(model_dir)
    cls = saved_model_class(model_dir)
    latent_key = latent_key or cls.latent_key
    registry = meta["registry"]
    genes = list(registry["fields"]["X"]["column_names"])
    layer = registry["fields"]["X"]["attr_key"]
    adata = _with_missing_labels(read_h5ad(h5ad), registry, h5ad, full_anndata)
    try:  # extra genes are dropped below; the rest must be what the model was set up with
        check_compatible(registry, adata, genes="superset")
    except RegistrationError as err:
        raise StepError(f"{h5ad} does not fit the model in {model_dir}: {err}") from err
    full = adata if full_anndata else None
    if list(adata.var_names) != genes:
        adata = adata[:, genes].copy()
    # Keep the input's layout for the registered genes (counts in X, or in their layer), so the
    # saved registry applies to the written file as it is.
    counts = get_count_matrix(adata, layer)
    out = anndata.AnnData(X=counts if layer is None else adata.X, obs=adata.obs.copy(), var=adata.var.copy())
    if layer is not None:
        out.layers[layer] = counts
    if latent is not None:
        from snakevi.data.registry import transfer_setup

        try:  # what SCVI.load would do: validate the counts and put the model's registry in uns
            transfer_setup(out, registry)
        except RegistrationError as err:
            raise StepError(f"{h5ad} does not fit the model in {model_dir}: {err}") from err
        out.obsm[latent_key] = np.asarray(read_latent(latent, out.n_obs), dtype=np.float32)
    if latent is None or normalized_layer or cls.predicts_labels:
        _model_outputs(out, cls, model_dir, h5ad, latent_key=None if latent is not None else latent_key,
                       predicted_key=predicted_key if cls.predicts_labels else None,
                       normalized_layer=normalized_layer, library_size=library_size, batch_size=batch_size,
                       threads=threads)
    out.uns["snakevi"] = {"latent_key": latent_key, "normalized_layer": normalized_layer or "",
                          "model_dir": str(model_dir)}
    if full is not None:
        out = _into_full(full, out, latent_key, predicted_key if cls.predicts_labels else None)
    write_h5ad_atomic(out, embedding_out)
    log.info("embedding %s (%d cells x %d dims) -> %s", latent_key, out.n_obs, out.obsm[latent_key].shape[1],
             embedding_out)
    return out


def _with_missing_labels(adata, registry: dict, h5ad, full_anndata: bool):
    """``adata`` with the run's ``setup.missing_labels`` applied, as at registration."""
    from snakevi.data.missing_labels import apply_missing_labels_to_anndata

    adata, keep = apply_missing_labels_to_anndata(adata, registry.get("missing_labels"))
    if keep is not None and full_anndata:
        raise StepError(
            f"export.full_anndata with setup.missing_labels: drop: the model has no latent for the "
            f"{int((~keep).sum())} cell(s) of {h5ad} without a label. Use missing_labels: unlabeled to "
            "keep every cell, or set export.full_anndata: false."
        )
    return adata


def _into_full(full, out, latent_key: str, predicted_key: str | None):
    """The input AnnData, whole, with the model's outputs computed on its registered genes."""
    full.obsm[latent_key] = out.obsm[latent_key]
    if predicted_key is not None:
        for key in (predicted_key, f"{predicted_key}_probability"):
            full.obs[key] = out.obs[key].values
    # Which genes the model saw (the highly variable ones, if the run selected some), as scanpy marks them.
    full.var["snakevi_model_gene"] = full.var_names.isin(out.var_names)
    full.uns["snakevi"] = {**out.uns["snakevi"], "model_genes": int(out.n_vars)}
    return full


def _model_outputs(out, cls, model_dir, h5ad, *, latent_key, predicted_key, normalized_layer, library_size,
                   batch_size, threads) -> None:
    """Load the model on ``out``; store its latent representation, predictions, normalized expression."""
    import torch

    from snakevi.data.validation import RegistrationError

    if threads:
        torch.set_num_threads(int(threads))
    try:
        model = cls.load(model_dir, out)
    except RegistrationError as err:
        raise StepError(f"{h5ad} does not fit the model in {model_dir}: {err}") from err
    if latent_key is not None:
        out.obsm[latent_key] = np.asarray(model.get_latent_representation(batch_size=batch_size), dtype=np.float32)
    if predicted_key is not None:
        store_predictions(out, model, predicted_key, batch_size=batch_size)
    if normalized_layer:
        # The expression is decoded from one posterior sample per cell (as in scvi-tools); seeding
        # with the model's seed makes the layer the same on every run.
        torch.manual_seed(0 if model.seed is None else int(model.seed))
        expr = model.get_normalized_expression(library_size=library_size, batch_size=batch_size, return_numpy=True)
        out.layers[normalized_layer] = np.asarray(expr, dtype=np.float32)


def store_predictions(out, model, predicted_key: str, *, batch_size: int | None = None) -> np.ndarray:
    """A label-predicting model's labels in ``out.obs[predicted_key]``, their probability in ``<key>_probability``.

    One pass of ``model.predict`` (soft; :meth:`SCANVI.predict`), so label and probability come from the same
    forward pass. Returns the labels (strings).
    """
    probs = model.predict(soft=True, batch_size=batch_size)
    values = probs.to_numpy()
    predicted = probs.columns.to_numpy()[values.argmax(axis=1)].astype(str)
    out.obs[predicted_key] = predicted
    out.obs[f"{predicted_key}_probability"] = values.max(axis=1).astype(np.float32)
    return predicted
