"""Reference mapping: a query .h5ad onto a trained model (scArches surgery), as one step.

The query's genes are put in the reference's order (missing ones padded with zeros), its
batches are appended to the reference's, and the weights of those new batches train
(``load_query_data`` with scvi-tools' defaults: the reference's weights are frozen except the
decoder's batch norm, and query training uses weight decay 0 so that the frozen columns of
partly trained layers stay exactly as they were). The step writes the query
model, its history and the query's embedding: ``obsm[latent_key]`` and, for a scANVI
reference, the predicted labels ``obs[predicted_key]`` with their probability in
``obs[predicted_key + "_probability"]``. ``summary.json`` counts cells, batches and predicted
labels, and, when the query has the reference's labels column, the agreement with it.
"""

from __future__ import annotations

import logging
import os

import numpy as np

from snakevi.steps._io import StepError, read_h5ad, write_h5ad_atomic, write_json_atomic, write_text_atomic

log = logging.getLogger(__name__)


def map_query(
    reference_dir: str | os.PathLike,
    query_h5ad: str | os.PathLike,
    model_out: str | os.PathLike,
    history_out: str | os.PathLike,
    embedding_out: str | os.PathLike,
    summary_out: str | os.PathLike | None = None,
    *,
    train_params: dict | None = None,
    seed: int = 0,
    use_labels: bool = False,
    unfrozen: bool = False,
    latent_key: str | None = None,
    predicted_key: str = "C_scANVI",
    accelerator: str = "auto",
    threads: int | None = None,
):
    """Map ``query_h5ad`` onto the model in ``reference_dir`` and write the query's outputs.

    Parameters
    ----------
    reference_dir
        A model folder written by the train step (SCVI or SCANVI), or a scvi-tools model
        directory of either (``model.pt``, as ``model.save()`` of scvi-tools and scvi-hub write).
    query_h5ad
        The query's raw counts, with the reference's batch key in ``obs``.
    model_out, history_out, embedding_out, summary_out
        Query model folder, its training history (CSV), the query embedding (.h5ad) and a
        JSON summary (optional).
    train_params
        ``max_epochs``, ``lr``, ``weight_decay`` and ``batch_size``. Left out: ``max_epochs`` and
        ``weight_decay`` of :data:`snakevi.model.arches.QUERY_TRAIN_DEFAULTS` (weight decay 0 is
        scvi-tools' advice for query training, so the frozen weights are not decayed), ``lr`` of
        the training plan and ``batch_size`` of ``train()``.
    seed
        Seed of the new weights, the split and the minibatch order.
    use_labels
        Keep the query's own labels (a scANVI reference then trains on them where known).
        ``False`` treats every query cell as unlabelled: the usual case of annotating new data.
    unfrozen
        Train every weight, not just the new batch columns.
    latent_key
        ``obsm`` key of the embedding; ``None``: the reference's model class's (``X_scVI``,
        ``X_scANVI``, ...: its ``latent_key``).
    predicted_key
        ``obs`` key of the predicted labels of a reference that predicts them (scANVI).
    accelerator, threads
        Device and torch CPU threads.

    Returns
    -------
    anndata.AnnData
        The query embedding written.
    """
    from snakevi.data.compatibility import check_compatible
    from snakevi.data.validation import RegistrationError
    from snakevi.model.bundle import ModelFileError
    from snakevi.model.persistence import read_model_dir
    from snakevi.model.registry import saved_model_class

    try:
        meta = read_model_dir(reference_dir, weights=False)[1]
        cls = saved_model_class(reference_dir, meta)
    except ModelFileError as err:
        raise StepError(f"reference model {reference_dir}: {err}") from err
    name = cls.__name__
    registry = meta["registry"]
    predicts = cls.predicts_labels
    latent_key = latent_key or cls.latent_key
    adata = read_h5ad(query_h5ad)
    try:  # before torch is imported; the genes are padded to the reference's below
        check_compatible(registry, adata, genes="skip", new_categories=True, query=True, owner="the reference model")
    except RegistrationError as err:
        raise StepError(f"{query_h5ad} cannot be mapped onto {reference_dir}: {err}") from err
    batch_key = registry["setup_args"].get("batch_key")
    labels_key = registry["setup_args"].get("labels_key")
    truth = None
    if labels_key is not None and labels_key in adata.obs.columns:
        truth = adata.obs[labels_key].astype(str).to_numpy()
        if predicts and not use_labels:
            adata.obs = adata.obs.drop(columns=labels_key)  # every cell unlabelled; the truth is kept aside
    import torch

    from snakevi.model.arches import QUERY_TRAIN_DEFAULTS, prepare_query_anndata

    if threads:
        torch.set_num_threads(int(threads))
    try:
        adata = prepare_query_anndata(adata, str(reference_dir), inplace=False)
        model = cls.load_query_data(adata, str(reference_dir), unfrozen=unfrozen, accelerator=accelerator)
    except (RegistrationError, ValueError) as err:
        raise StepError(f"{query_h5ad} cannot be mapped onto {reference_dir}: {err}") from err
    params = {**QUERY_TRAIN_DEFAULTS, **(train_params or {})}
    # A key left out (lr) keeps the plan's default.
    plan_kwargs = {key: float(params[key]) for key in ("lr", "weight_decay") if key in params}
    train_kwargs = {"max_epochs": int(params["max_epochs"]), "seed": int(seed), "accelerator": accelerator,
                    "enable_progress_bar": False, "plan_kwargs": plan_kwargs}
    if "batch_size" in params:  # left out: train()'s default
        train_kwargs["batch_size"] = int(params["batch_size"])
    model.train(**train_kwargs)
    model.save(model_out, overwrite=True)
    write_text_atomic(history_out, model.history.to_csv(index_label="epoch"))

    out = adata.copy()
    if truth is not None and predicts and not use_labels:
        out.obs[labels_key] = truth
    out.obsm[latent_key] = np.asarray(model.get_latent_representation(), dtype=np.float32)
    summary = {"reference": str(reference_dir), "model": name, "n_obs": int(out.n_obs),
               "query_batches": sorted(map(str, adata.obs[batch_key].unique())) if batch_key else [],
               "epochs": int(len(model.history)), "latent_key": latent_key}
    if predicts:
        from snakevi.steps.export import store_predictions

        predicted = store_predictions(out, model, predicted_key)
        summary["predicted_key"] = predicted_key
        summary["predicted_counts"] = {str(k): int(v) for k, v in zip(*np.unique(predicted, return_counts=True))}
        if truth is not None:
            summary["accuracy_vs_" + labels_key] = float(np.mean(predicted == truth))
    write_h5ad_atomic(out, embedding_out)
    if summary_out is not None:
        write_json_atomic(summary_out, summary)
    log.info("query %s (%d cells) mapped onto %s -> %s", query_h5ad, out.n_obs, reference_dir, embedding_out)
    return out
