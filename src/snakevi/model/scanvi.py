"""``SCANVI``: semi-supervised cell annotation with scANVI (Xu et al. 2021) on registered AnnData."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from snakevi.model import scanvi_from_scvi, scanvi_training
from snakevi.model.arches import ArchesMixin
from snakevi.model.base import BaseModelClass
from snakevi.model.inference import InferenceMixin
from snakevi.model.scvi import SCVI

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd
    from anndata import AnnData


class SCANVI(ArchesMixin, InferenceMixin, BaseModelClass):
    """scANVI: scVI plus a cell-type classifier, trained on partly labelled data.

    Register the data with :meth:`SCANVI.setup_anndata`, naming the label column and the value
    that marks unlabelled cells; the model learns from the labelled cells and predicts labels
    for all (:meth:`predict`). Usually started from a trained SCVI (:meth:`from_scvi_model`).

    Parameters
    ----------
    adata
        AnnData registered with :meth:`SCANVI.setup_anndata` (or a ``CellData``).
    n_hidden, n_latent, n_layers, dropout_rate, dispersion, gene_likelihood
        As for :class:`~snakevi.model.SCVI`.
    use_observed_lib_size
        Use the observed library size (otherwise a latent one with a per-batch prior).
    linear_classifier
        A single Linear layer as classifier instead of an MLP.
    seed
        Seed of the weight initialisation and the default training seed.
    **model_kwargs
        Further :class:`~snakevi.module.SCANVAE` arguments (``classifier_parameters``,
        ``y_prior``, ``latent_distribution``, ``use_batch_norm``, ...); they must be
        JSON-serialisable for :meth:`save`.

    Examples
    --------
    >>> import snakevi
    >>> from snakevi.model import SCANVI
    >>> adata = snakevi.data.simulate(n_cells=300, n_genes=50)
    >>> adata.obs["label"] = adata.obs["label"].cat.add_categories("Unknown")
    >>> adata.obs.loc[adata.obs_names[:100], "label"] = "Unknown"
    >>> _ = SCANVI.setup_anndata(adata, labels_key="label", unlabeled_category="Unknown", batch_key="batch")
    >>> model = SCANVI(adata, n_latent=5)
    >>> _ = model.train(max_epochs=2, enable_progress_bar=False)
    >>> model.predict().shape
    (300,)
    """

    model_class = "scanvi"
    latent_key = "X_scANVI"
    predicts_labels = True
    #: A run trains scVI first, then scANVI from it (``train.scanvi``: see :mod:`snakevi.model.scanvi_training`).
    pretrained_with = SCVI
    phase_sections = {scanvi_training.SECTION: scanvi_training.SECTION_KEYS}
    check_training_registry = staticmethod(scanvi_training.check_scanvi_registry)
    training_phases = classmethod(scanvi_training.scanvi_phases)

    def __init__(
        self,
        adata,
        n_hidden: int = 128,
        n_latent: int = 10,
        n_layers: int = 1,
        dropout_rate: float = 0.1,
        dispersion: Literal["gene", "gene-batch", "gene-label", "gene-cell"] = "gene",
        gene_likelihood: Literal["zinb", "nb", "poisson"] = "zinb",
        use_observed_lib_size: bool = True,
        linear_classifier: bool = False,
        *,
        seed: int | None = 0,
        **model_kwargs: Any,
    ) -> None:
        super().__init__(
            adata,
            seed=seed,
            n_hidden=n_hidden,
            n_latent=n_latent,
            n_layers=n_layers,
            dropout_rate=dropout_rate,
            dispersion=dispersion,
            gene_likelihood=gene_likelihood,
            use_observed_lib_size=use_observed_lib_size,
            linear_classifier=linear_classifier,
            **model_kwargs,
        )
        #: True for a model built by :meth:`from_scvi_model` (fewer default epochs).
        self.was_pretrained = False

    # ---- construction -------------------------------------------------------------------
    @property
    def _module_cls(self):
        from snakevi.module import SCANVAE

        return SCANVAE

    @property
    def unlabeled_category(self):
        """The label value that marks unlabelled cells (the last label category)."""
        return self._labels_field["unlabeled_category"]

    @property
    def _labels_field(self) -> dict:
        field = self.registry["fields"]["labels"]
        if "unlabeled_category" not in field:
            raise ValueError(
                "The data was registered without an unlabeled_category; call "
                "SCANVI.setup_anndata(adata, labels_key=..., unlabeled_category=...) first."
            )
        return field

    @property
    def n_labels(self) -> int:
        """Number of known cell types (the unlabelled category excluded)."""
        return len(self._labels_field["categorical_mapping"]) - 1

    @property
    def labels(self) -> list:
        """The known cell types, in code order (what :meth:`predict` returns)."""
        return list(self._labels_field["categorical_mapping"][: self.n_labels])

    def _module_kwargs(self, model_kwargs: dict) -> dict:
        s = self.summary
        kwargs = dict(
            n_input=s["n_vars"],
            n_batch=s["n_batch"],
            n_labels=self.n_labels,
            n_continuous_cov=s["n_extra_continuous_covs"],
            n_cats_per_cov=list(s["n_cats_per_cov"]) or None,
            use_size_factor_key=bool(s["has_size_factor"]),
            **model_kwargs,
        )
        if not kwargs.get("use_observed_lib_size", True) and not kwargs["use_size_factor_key"]:
            from snakevi.data import library_size_stats

            kwargs["library_log_means"], kwargs["library_log_vars"] = library_size_stats(self.data)
        return kwargs

    @classmethod
    def from_scvi_model(
        cls,
        scvi_model: SCVI,
        unlabeled_category,
        labels_key: str | None = None,
        adata: AnnData | None = None,
        **scanvi_kwargs: Any,
    ) -> SCANVI:
        """A SCANVI initialised with the weights of a trained SCVI (scvi-tools' recommended start).

        ``adata`` (default: the SCVI model's own) is registered again with
        :meth:`setup_anndata`, using the SCVI setup plus the labels; every weight the two
        modules share (encoders, decoder, dispersion) is copied, so before training the
        latent representation equals the SCVI one. :meth:`train` then defaults to
        ``min(10, max(2, round(h / 3)))`` epochs (``h``: the usual heuristic).

        Parameters
        ----------
        scvi_model
            A trained :class:`~snakevi.model.SCVI`.
        unlabeled_category
            The value of the labels column that marks unlabelled cells.
        labels_key
            The labels column; needed when the SCVI data was set up without one, otherwise it
            must be the SCVI one (or ``None``).
        adata
            The data for SCANVI; the same genes and categories as the SCVI model's.
        **scanvi_kwargs
            Further :class:`SCANVI` arguments; those the SCVI model already fixed (``n_latent``,
            ``n_hidden``, ...) are ignored with a warning, as in scvi-tools.
        """
        return scanvi_from_scvi.from_scvi_model(
            cls, scvi_model, unlabeled_category, labels_key=labels_key, adata=adata, **scanvi_kwargs
        )

    @classmethod
    def setup_anndata(
        cls,
        adata: AnnData,
        labels_key: str,
        unlabeled_category,
        layer: str | None = None,
        batch_key: str | None = None,
        size_factor_key: str | None = None,
        categorical_covariate_keys: Sequence[str] | None = None,
        continuous_covariate_keys: Sequence[str] | None = None,
    ) -> dict:
        """Validate ``adata`` and register it for SCANVI.

        Parameters
        ----------
        adata
            AnnData with raw integer counts in ``X`` or ``layers[layer]``.
        labels_key
            ``obs`` column with the cell labels; cells to be annotated carry ``unlabeled_category``.
        unlabeled_category
            The value of ``labels_key`` that marks unlabelled cells. It becomes the last label
            category (scvi-tools' order); it need not occur (then every cell is labelled).
        layer, batch_key, size_factor_key, categorical_covariate_keys, continuous_covariate_keys
            As for :meth:`SCVI.setup_anndata`.

        Returns
        -------
        The registry, also stored in ``adata.uns["_snakevi_registry"]``.
        """
        from snakevi.data import setup_anndata
        from snakevi.data.validation import RegistrationError

        if labels_key is None or unlabeled_category is None:
            raise RegistrationError(
                "SCANVI.setup_anndata needs labels_key (the obs column of cell labels) and unlabeled_category "
                "(the value that marks unlabelled cells), e.g. labels_key='cell_type', unlabeled_category='Unknown'."
            )
        return setup_anndata(
            adata,
            layer=layer,
            batch_key=batch_key,
            labels_key=labels_key,
            size_factor_key=size_factor_key,
            categorical_covariate_keys=categorical_covariate_keys,
            continuous_covariate_keys=continuous_covariate_keys,
            unlabeled_category=unlabeled_category,
            model_name=cls.__name__,
        )

    # ---- training -----------------------------------------------------------------------
    def train(
        self,
        max_epochs: int | None = None,
        n_samples_per_label: int | None = None,
        *,
        train_size: float | None = 0.9,
        **kwargs: Any,
    ) -> SCANVI:
        """Train the model semi-supervised; other arguments as :meth:`BaseModelClass.train`.

        Parameters
        ----------
        max_epochs
            Passes through the data. ``None``: the heuristic ``h = max(1, min(round(20000 /
            n_obs * 400), 400))``, or ``min(10, max(2, round(h / 3)))`` for a model from
            :meth:`from_scvi_model`.
        n_samples_per_label
            Use at most this many labelled cells per class in each epoch, drawn anew every
            epoch (the ``SubSampleLabels`` callback); ``None`` uses them all.
        train_size
            Share of the labelled and of the unlabelled cells used for training; 0.9 is
            passed explicitly, as scvi-tools does (a 1-2 cell last minibatch is only warned about).
        **kwargs
            ``validation_size``, ``batch_size``, ``plan_kwargs`` (for
            :class:`~snakevi.train.SemiSupervisedTrainingPlan`: ``classification_ratio``,
            ``lr``, ...), ``callbacks``, ``early_stopping``, ``ckpt_path``, ...

        Returns
        -------
        The model itself.
        """
        splitter_kwargs = dict(kwargs.pop("datasplitter_kwargs", None) or {})
        if n_samples_per_label is not None or "n_samples_per_label" not in splitter_kwargs:
            # (a rank of train(devices=N) gets it back inside datasplitter_kwargs)
            splitter_kwargs["n_samples_per_label"] = n_samples_per_label
        return super().train(max_epochs, train_size=train_size, datasplitter_kwargs=splitter_kwargs, **kwargs)

    def _default_max_epochs(self, n_obs: int) -> int:
        epochs = super()._default_max_epochs(n_obs)
        if self.was_pretrained:
            epochs = int(min(10, max(2, round(epochs / 3.0))))
        return epochs

    def _make_splitter(self, data, **kwargs):
        from snakevi.data import SemiSupervisedDataSplitter

        return SemiSupervisedDataSplitter(data, **kwargs)

    def _make_plan(self, plan_kwargs: dict, seed: int | None):
        from snakevi.train import SemiSupervisedTrainingPlan

        return SemiSupervisedTrainingPlan(self.module, self.n_labels, **plan_kwargs)

    def _required_callbacks(self, splitter, callbacks: list) -> list:
        from snakevi.train import SubSampleLabels

        # Kept whatever the user passed (scvi-tools drops it when callbacks are given).
        if splitter.has_labels and not any(isinstance(c, SubSampleLabels) for c in callbacks):
            return [SubSampleLabels()]
        return []

    def _make_loaders(self, splitter, on_device: bool, device):
        splitter.data_on_device, splitter.device = on_device, device if on_device else None
        return splitter.train_dataloader(), splitter.val_dataloader()

    # ---- prediction ---------------------------------------------------------------------
    def predict(
        self,
        adata=None,
        indices: Sequence[int] | None = None,
        soft: bool = False,
        batch_size: int | None = None,
        use_posterior_mean: bool = True,
    ) -> np.ndarray | pd.DataFrame:
        """Predicted cell types.

        Parameters
        ----------
        adata
            Data to annotate (default: the model's own); new data needs the model's genes and
            known batches (its labels column may hold anything the registry knows).
        indices
            Cells to annotate (positions); default all.
        soft
            Return class probabilities instead of labels.
        batch_size
            Cells per minibatch (default 128).
        use_posterior_mean
            Classify the posterior mean of ``z1`` (deterministic); otherwise one sample.

        Returns
        -------
        ``soft=False``: array ``(n_cells,)`` of label values (the categories of
        ``labels_key``); ``soft=True``: DataFrame cells x known labels (unlabelled category
        excluded) of probabilities, indexed by obs_names.
        """
        import torch

        mapping = np.asarray(self.labels, dtype=object)

        def one(batch):
            scores = self.module.classify(
                batch["X"],
                batch_index=batch["batch"],
                cont_covs=batch.get("extra_continuous_covs"),
                cat_covs=batch.get("extra_categorical_covs"),
                use_posterior_mean=use_posterior_mean,
            )
            probs = torch.softmax(scores, dim=-1) if self.module.classifier.logits else scores
            return probs.float().cpu().numpy()

        import pandas as pd  # here, not at the top: training imports no pandas

        idx, obs_names, _ = self._cells_and_genes(adata, indices)
        if len(idx) == 0:
            return pd.DataFrame(columns=mapping) if soft else np.array([], dtype=object)
        probs = np.concatenate(self._run(one, adata, indices, batch_size), axis=0)
        if soft:
            return pd.DataFrame(probs, columns=list(mapping), index=obs_names if obs_names is not None else idx)
        return mapping[probs.argmax(axis=1)]


__all__ = ["SCANVI"]
