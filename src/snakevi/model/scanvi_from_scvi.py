"""A SCANVI started from a trained SCVI (scvi-tools' ``SCANVI.from_scvi_model``).

:meth:`SCANVI.from_scvi_model <snakevi.model.SCANVI.from_scvi_model>` delegates here: the data
is registered again for SCANVI (or, for prepared arrays, re-labelled), and every weight the
two modules share is copied.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from anndata import AnnData

    from snakevi.model.scanvi import SCANVI
    from snakevi.model.scvi import SCVI


def from_scvi_model(
    cls: type[SCANVI],
    scvi_model: SCVI,
    unlabeled_category,
    labels_key: str | None = None,
    adata: AnnData | None = None,
    **scanvi_kwargs: Any,
) -> SCANVI:
    """A ``cls`` initialised with the weights of ``scvi_model``; see :meth:`SCANVI.from_scvi_model`."""
    from snakevi.data.compatibility import check_compatible

    if not scvi_model.is_trained:
        raise RuntimeError(
            "from_scvi_model: the SCVI model has not been trained; call scvi_model.train() first "
            "(or build SCANVI(adata) directly to train from scratch)."
        )
    params = dict(scvi_model.init_params)
    for key in [k for k in scanvi_kwargs if k in params]:
        warnings.warn(
            f"Ignoring {key}={scanvi_kwargs[key]!r}: the pretrained SCVI model fixed it to {params[key]!r}.",
            UserWarning,
            stacklevel=3,  # the caller of SCANVI.from_scvi_model
        )
        del scanvi_kwargs[key]
    if adata is None:
        adata = scvi_model.adata
        if adata is None:  # prepared arrays (the workflow): their registry must already say which label is unknown
            adata = _scanvi_celldata(scvi_model.data, unlabeled_category, labels_key, cls.__name__)
            seed = params.pop("seed", 0)
            model = cls(adata, seed=seed, **params, **scanvi_kwargs)
            model.module.load_state_dict(scvi_model.module.state_dict(), strict=False)
            model.was_pretrained = True
            return model
    setup_args = dict(scvi_model.registry["setup_args"])
    scvi_labels_key = setup_args.get("labels_key")
    if scvi_labels_key is None:
        if labels_key is None:
            raise ValueError(
                "from_scvi_model needs labels_key: the SCVI model was set up without one. "
                "Pass the obs column with the cell labels, e.g. labels_key='cell_type'."
            )
        setup_args["labels_key"] = labels_key
    elif labels_key is not None and labels_key != scvi_labels_key:
        raise ValueError(
            f"from_scvi_model: labels_key={labels_key!r} but the SCVI model was set up with "
            f"labels_key={scvi_labels_key!r}; pass labels_key=None (or the same key)."
        )
    setup_args.pop("unlabeled_category", None)
    cls.setup_anndata(adata, unlabeled_category=unlabeled_category, **setup_args)
    seed = params.pop("seed", 0)
    model = cls(adata, seed=seed, **params, **scanvi_kwargs)
    # The SCVI weights mean something only for the same genes, batches and covariates.
    check_compatible(scvi_model.registry, model.registry, labels=False, owner="the SCVI model",
                     context="from_scvi_model: ")
    # strict=False: the classifier and the z2 layers are new; shapes must still match.
    model.module.load_state_dict(scvi_model.module.state_dict(), strict=False)
    model.was_pretrained = True
    return model


def _scanvi_celldata(data, unlabeled_category, labels_key, model_name: str):
    """The SCVI model's CellData re-labelled for SCANVI: same arrays, registry named ``model_name``.

    A CellData cannot be set up again (it has no obs columns), so its registry must already
    carry ``unlabeled_category`` as the last label (``setup_anndata(..., unlabeled_category=...)``,
    what the workflow's register step writes).
    """
    import copy

    from snakevi.data import CellData
    from snakevi.data.compatibility import registry_unlabeled_category

    registry = copy.deepcopy(data.registry)
    have = registry_unlabeled_category(registry)
    if have is None or str(have) != str(unlabeled_category):
        raise ValueError(
            f"from_scvi_model: the SCVI model was built from a CellData whose registry has unlabeled category "
            f"{have!r}, not {unlabeled_category!r}; register the data with "
            f"setup_anndata(..., unlabeled_category={unlabeled_category!r}) or pass adata=..."
        )
    registered = registry["setup_args"].get("labels_key")
    if labels_key is not None and labels_key != registered:
        raise ValueError(f"from_scvi_model: labels_key={labels_key!r} but the data was registered with {registered!r}.")
    registry["model_name"] = model_name
    return CellData(data.X, data.obs, registry)
