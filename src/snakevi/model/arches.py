"""Reference mapping (scArches, Lotfollahi et al. 2022): fit query cells onto a trained model.

``Model.load_query_data(query, reference)`` registers the query with the reference's setup,
appending its new batches (and categorical covariate values) to the category mappings, builds
a model of the same class with the reference's parameters, copies the reference weights into
it and initialises only the slices that grew (the new categories' columns). Training it with
the ordinary ``train()`` then moves only those new columns (plus what a ``freeze_*=False``
option releases): with the default options the reference's embedding of its own cells does
not change. The module surgery is in :mod:`snakevi.model.surgery`, the gene padding in
:mod:`snakevi.model.query_genes`.

What follows scvi-tools 1.4.2 (``model/base/_archesmixin.py``) and where it differs:

- the freeze options and their defaults, which modules train (covariate columns of the
  ``FCLayers`` Linear weights through gradient hooks; the library encoder; BatchNorm affine
  parameters and running statistics per ``freeze_batchnorm_*``; dropout per ``freeze_dropout``;
  the classifier per ``freeze_classifier``), ``unfrozen=True`` leaving everything trainable;
- new categories appended in sorted order (``np.unique``), as scvi-tools' ``transfer_fields``;
- **differs**: a new category's columns are placed at the end of *its own* one-hot block, not
  at the end of the weight, so references with categorical covariates keep their covariate
  weights aligned (scvi-tools appends every grown slice at the end of the tensor);
- **differs**: the hooks keep the gradient of the new columns only; scvi-tools keeps every
  categorical column, so a query cell with a known covariate value moves that value's
  reference column. With batch as the only covariate both are the same (a reference batch
  column gets no gradient from query cells);
- **differs**: a frozen tensor gets ``requires_grad=False`` rather than a hook that zeroes its
  gradient, and a frozen classifier's BatchNorm statistics are frozen too; the new columns of
  other grown parameters (``px_r`` of ``dispersion="gene-batch"``) train instead of staying
  at their random initialisation;
- query genes must equal the reference's (``prepare_query_anndata`` makes them so); scvi-tools
  only warns.

Train the query model with ``plan_kwargs={"weight_decay": 0.0}`` (scvi-tools' tutorials do
the same): Adam's weight decay acts on every trainable tensor, including the reference columns
of the partly trainable first layers, which would otherwise drift.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from snakevi.model.persistence import read_model_dir

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd
    from anndata import AnnData

#: How a query model trains when not told otherwise (the map_query step, the workflow's
#: ``queries.<name>.train``): ``model.train(max_epochs=100, plan_kwargs={"weight_decay": 0.0})``.
#: Weight decay 0, as scvi-tools' tutorials advise, so Adam does not decay the frozen reference
#: columns of the partly trainable layers. ``lr`` and ``batch_size`` are those of the training
#: plan and of ``train()``.
QUERY_TRAIN_DEFAULTS = {"max_epochs": 100, "weight_decay": 0.0}


@dataclass
class _Reference:
    """What a reference model contributes: class name, setup, parameters and weights."""

    name: str
    registry: dict
    init_params: dict
    is_trained: bool
    where: str
    state_dict: dict | None = None


def _read_reference(reference, *, weights: bool) -> _Reference:
    """A model instance or a directory written by ``model.save()`` (either format) -> :class:`_Reference`."""
    if isinstance(reference, (str, os.PathLike)):
        where = str(reference)
        state_dict, meta = read_model_dir(reference, weights=weights)
        return _Reference(meta.get("model_name"), meta["registry"], dict(meta["init_params"]),
                          bool(meta.get("is_trained", False)), where, state_dict)
    if hasattr(reference, "module") and hasattr(reference, "registry") and hasattr(reference, "init_params"):
        state_dict = None
        if weights:
            state_dict = {k: v.detach().clone() for k, v in reference.module.state_dict().items()}
        return _Reference(type(reference).__name__, reference.registry, dict(reference.init_params),
                          bool(reference.is_trained), f"the given {type(reference).__name__} model", state_dict)
    raise TypeError(
        f"reference must be a trained snakevi model or the directory it was saved to, got {type(reference).__name__}."
    )


def prepare_query_anndata(
    adata: AnnData,
    reference,
    return_reference_var_names: bool = False,
    inplace: bool = True,
    *,
    min_gene_overlap: float = 0.5,
) -> AnnData | pd.Index | None:
    """Give the query the reference's genes in the reference's order (scvi-tools' function).

    Query genes the reference lacks are dropped; reference genes the query lacks are added as
    zero-count columns (in ``X`` and every layer), with a warning that gives their number.

    Parameters
    ----------
    adata
        The query AnnData.
    reference
        A trained model or the directory it was saved to (only its ``model.json`` is read).
    return_reference_var_names
        Only return the reference's genes (a ``pd.Index``), leaving ``adata`` alone.
    inplace
        Change ``adata`` itself (it must not be a view) and return ``None``; otherwise return a
        new AnnData.
    min_gene_overlap
        Refuse a query that has fewer than this fraction of the reference's genes (the padded
        zeros would stand for most of the expression profile); none at all is always refused.

    Returns
    -------
    ``None`` (``inplace``), the new AnnData, or the reference's genes.

    Notes
    -----
    When genes are added, ``varm`` and ``varp`` are dropped and the added genes get empty
    ``var`` entries (NaN, ``False`` or ``""``). Below 80% overlap the warning says the mapping
    may be poor, as scvi-tools does.
    """
    import pandas as pd  # here, not at the top: training imports no pandas

    from snakevi.model.query_genes import pad_query_genes

    ref_names = pd.Index(_read_reference(reference, weights=False).registry["fields"]["X"]["column_names"])
    if return_reference_var_names:
        return ref_names
    return pad_query_genes(adata, ref_names, inplace=inplace, min_gene_overlap=min_gene_overlap)


class ArchesMixin:
    """``load_query_data`` and ``prepare_query_anndata`` for models built on :class:`BaseModelClass`."""

    prepare_query_anndata = staticmethod(prepare_query_anndata)

    @classmethod
    def load_query_data(
        cls,
        adata: AnnData,
        reference,
        *,
        inplace_subset_query_vars: bool = False,
        accelerator: str = "auto",
        device: int | str = "auto",
        unfrozen: bool = False,
        freeze_dropout: bool = False,
        freeze_expression: bool = True,
        freeze_decoder_first_layer: bool = True,
        freeze_batchnorm_encoder: bool = True,
        freeze_batchnorm_decoder: bool = False,
        freeze_classifier: bool = True,
        transfer_batch: bool = True,
    ):
        """A model of this class for query cells, built from a trained reference (scArches).

        The query is registered with the reference's setup: new batches (and categorical
        covariate values) are appended to the reference's categories in sorted order; labels
        the reference does not know become its unlabeled category when it has one (SCANVI),
        and are an error otherwise. The new model holds the reference's weights; the columns
        of the new categories are freshly initialised, and training (the ordinary
        :meth:`train`) moves only them and whatever a ``freeze_*=False`` option releases.

        Parameters
        ----------
        adata
            The query AnnData, with the reference's genes in the reference's order (see
            :meth:`prepare_query_anndata`) and its batch column. It need not be registered;
            its registry (``adata.uns["_snakevi_registry"]``) is replaced.
        reference
            A trained model of this class, or the directory it was saved to.
        inplace_subset_query_vars
            Subset and reorder the query's genes to the reference's in place (the query must
            have all of them; otherwise use :meth:`prepare_query_anndata`, which pads).
        accelerator, device
            Where to put the model: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"mps"``; ``device``
            is ``"auto"`` or a device index.
        unfrozen
            Train every weight (overrides the other options).
        freeze_dropout
            Set dropout to 0.
        freeze_expression
            Keep the gene columns of the encoders' first layer frozen; ``False`` trains that
            whole layer.
        freeze_decoder_first_layer
            Keep the decoder's first layer frozen but for new covariate columns; ``False``
            trains that whole layer.
        freeze_batchnorm_encoder, freeze_batchnorm_decoder
            Freeze BatchNorm's affine parameters and running statistics (``momentum=0``).
            Defaults as scvi-tools: the decoder's BatchNorm trains.
        freeze_classifier
            Freeze the module's ``classifier`` (SCANVI), its BatchNorm statistics included.
        transfer_batch
            ``False`` refuses a query with batches the reference does not have.

        Returns
        -------
        The query model (``is_trained`` is ``False`` until it is trained). Train it as any
        model; scvi-tools' recommended query training is
        ``model.train(max_epochs=200, plan_kwargs={"weight_decay": 0.0})``: with weight decay,
        Adam also moves the frozen reference columns of the partly trainable layers. It saves
        and loads like any model (its registry holds the extended categories); a loaded copy
        has no freezing hooks.

        Examples
        --------
        >>> import snakevi
        >>> from snakevi.model import SCVI
        >>> ref = snakevi.data.simulate(n_cells=300, n_genes=50, n_batches=2, seed=0)
        >>> _ = SCVI.setup_anndata(ref, batch_key="batch")
        >>> reference = SCVI(ref, n_latent=4).train(max_epochs=2, enable_progress_bar=False)
        >>> query = snakevi.data.simulate(n_cells=100, n_genes=50, n_batches=1, seed=1)
        >>> query.obs["batch"] = "lab_b"
        >>> model = SCVI.load_query_data(query, reference)
        >>> model.registry["fields"]["batch"]["categorical_mapping"]
        ['batch0', 'batch1', 'lab_b']
        >>> _ = model.train(max_epochs=2, batch_size=32, plan_kwargs={"weight_decay": 0.0}, enable_progress_bar=False)
        """
        from snakevi.data import transfer_setup
        from snakevi.model.surgery import category_growth, set_params_online_update, transplant
        from snakevi.train.device import resolve_device

        ref = _read_reference(reference, weights=True)
        _check_reference(cls, ref)
        _check_query(adata, ref, inplace_subset_query_vars, transfer_batch)
        torch_device = resolve_device(accelerator, _device_index(device))

        registry = transfer_setup(adata, ref.registry, extend_categories=True, allow_missing_labels=True)
        params = dict(ref.init_params)
        seed = params.pop("seed", 0)
        model = cls(adata, seed=seed, **params)
        model.module.to(torch_device)
        fresh = transplant(model.module, ref.state_dict, category_growth(ref.registry, registry), ref.where)
        model.module.eval()
        model._arches_hooks = set_params_online_update(
            model.module,
            fresh,
            unfrozen=unfrozen,
            freeze_dropout=freeze_dropout,
            freeze_expression=freeze_expression,
            freeze_decoder_first_layer=freeze_decoder_first_layer,
            freeze_batchnorm_encoder=freeze_batchnorm_encoder,
            freeze_batchnorm_decoder=freeze_batchnorm_decoder,
            freeze_classifier=freeze_classifier,
        )
        model.is_trained = False
        return model


def _check_reference(cls, ref: _Reference) -> None:
    if ref.name != cls.__name__:
        raise ValueError(
            f"{ref.where} is a {ref.name} model; map queries onto it with {ref.name}.load_query_data, "
            f"not {cls.__name__}.load_query_data."
        )
    if not ref.is_trained:
        raise ValueError(
            f"{ref.where} has not been trained; train the reference (model.train()) before mapping a query onto it."
        )


def _check_query(adata, ref: _Reference, subset_vars: bool, transfer_batch: bool) -> None:
    """Clear errors for a query that cannot be registered with the reference's setup.

    With ``subset_vars``, a query that has every reference gene is subset to them in place
    (after all checks passed).
    """
    from snakevi.data import CellData
    from snakevi.data.compatibility import check_compatible, unseen_categories
    from snakevi.data.validation import examples

    if isinstance(adata, CellData) or not hasattr(adata, "var_names"):
        raise TypeError(f"load_query_data needs the query as an AnnData, got {type(adata).__name__}.")
    check_compatible(ref.registry, adata, genes="superset" if subset_vars else "same", new_categories=True,
                     query=True, owner="the reference model")
    new = unseen_categories(ref.registry, adata, "batch")
    if new and not transfer_batch:
        batch_key = ref.registry["fields"]["batch"]["original_key"]
        raise ValueError(
            f"transfer_batch=False but adata.obs[{batch_key!r}] has batches the reference does not have: "
            f"{examples(new)}."
        )
    ref_names = list(ref.registry["fields"]["X"]["column_names"])
    if [str(g) for g in adata.var_names] != ref_names:
        import pandas as pd  # here, not at the top: training imports no pandas

        adata._inplace_subset_var(pd.Index([str(g) for g in adata.var_names]).get_indexer(ref_names))


def _device_index(device) -> str | list[int]:
    """scvi-tools' ``device`` argument (``"auto"`` or an index) as snakevi's ``devices``."""
    if device == "auto":
        return "auto"
    if isinstance(device, int) and not isinstance(device, bool) and device >= 0:
        return [device]
    raise ValueError(f"device={device!r}: pass 'auto' or a device index such as 0 or 1.")


__all__ = ["QUERY_TRAIN_DEFAULTS", "ArchesMixin", "prepare_query_anndata"]
