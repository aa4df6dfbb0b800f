"""``SCVI``: single-cell variational inference (Lopez et al. 2018) on registered AnnData."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal, Sequence

from snakevi.model.arches import ArchesMixin
from snakevi.model.base import BaseModelClass
from snakevi.model.inference import InferenceMixin

if TYPE_CHECKING:  # pragma: no cover
    from anndata import AnnData


class SCVI(ArchesMixin, InferenceMixin, BaseModelClass):
    """scVI: a VAE for UMI counts with batch correction.

    Parameters
    ----------
    adata
        AnnData registered with :meth:`SCVI.setup_anndata` (or a ``CellData``).
    n_hidden
        Nodes per hidden layer.
    n_latent
        Dimensionality of the latent space.
    n_layers
        Hidden layers in the encoder and decoder.
    dropout_rate
        Dropout in the encoder.
    dispersion
        ``"gene"``, ``"gene-batch"``, ``"gene-label"`` or ``"gene-cell"``.
    gene_likelihood
        ``"zinb"``, ``"nb"`` or ``"poisson"``.
    latent_distribution
        ``"normal"`` or ``"ln"`` (logistic normal).
    seed
        Seed of the weight initialisation and the default training seed.
    **vae_kwargs
        Further :class:`snakevi.module.VAE` arguments (``use_batch_norm``, ``use_layer_norm``,
        ``encode_covariates``, ``deeply_inject_covariates``, ``use_observed_lib_size``, ...).

    Examples
    --------
    >>> import snakevi
    >>> from snakevi.model import SCVI
    >>> adata = snakevi.data.simulate(n_cells=500, n_genes=100)
    >>> SCVI.setup_anndata(adata, batch_key="batch")  # doctest: +ELLIPSIS
    {...}
    >>> model = SCVI(adata, n_latent=5)
    >>> _ = model.train(max_epochs=2, enable_progress_bar=False)
    >>> model.get_latent_representation().shape
    (500, 5)
    """

    model_class = "scvi"

    def __init__(
        self,
        adata,
        n_hidden: int = 128,
        n_latent: int = 10,
        n_layers: int = 1,
        dropout_rate: float = 0.1,
        dispersion: Literal["gene", "gene-batch", "gene-label", "gene-cell"] = "gene",
        gene_likelihood: Literal["zinb", "nb", "poisson"] = "zinb",
        latent_distribution: Literal["normal", "ln"] = "normal",
        *,
        seed: int | None = 0,
        **vae_kwargs: Any,
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
            latent_distribution=latent_distribution,
            **vae_kwargs,
        )

    @property
    def _module_cls(self):  # resolved lazily so importing snakevi.model stays cheap
        from snakevi.module import VAE

        return VAE

    def _module_kwargs(self, model_kwargs: dict) -> dict:
        s = self.summary
        kwargs = dict(
            n_input=s["n_vars"],
            n_batch=s["n_batch"],
            n_labels=s["n_labels"],
            n_continuous_cov=s["n_extra_continuous_covs"],
            n_cats_per_cov=list(s["n_cats_per_cov"]) or None,
            use_size_factor_key=bool(s["has_size_factor"]),
            **model_kwargs,
        )
        if not kwargs.get("use_observed_lib_size", True) and not kwargs["use_size_factor_key"]:
            from snakevi.data import library_size_stats

            kwargs["library_log_means"], kwargs["library_log_vars"] = library_size_stats(self.data)
        return kwargs

    def train(self, max_epochs: int | None = None, *, adversarial_classifier: bool = False, **kwargs: Any) -> SCVI:
        """Train the model; see :meth:`snakevi.model.base.BaseModelClass.train` for the other arguments.

        Parameters
        ----------
        max_epochs
            Passes through the data; ``None`` uses scvi-tools' heuristic.
        adversarial_classifier
            Train with :class:`~snakevi.train.AdversarialTrainingPlan`: a batch classifier on
            the latent space that the encoder learns to fool (better batch mixing). Also
            accepted as ``plan_kwargs={"adversarial_classifier": True}`` (with
            ``scale_adversarial_loss``). With a single batch it is turned off with a warning.
        **kwargs
            Passed to :meth:`BaseModelClass.train` (``train_size``, ``batch_size``,
            ``plan_kwargs``, ``callbacks``, ``early_stopping``, ``ckpt_path``, ...).

        Returns
        -------
        The model itself.
        """
        if adversarial_classifier:
            kwargs["plan_kwargs"] = {**(kwargs.get("plan_kwargs") or {}), "adversarial_classifier": True}
        return super().train(max_epochs, **kwargs)

    def _make_plan(self, plan_kwargs: dict, seed: int | None):
        import torch

        from snakevi.train import AdversarialTrainingPlan, TrainingPlan

        adversarial = plan_kwargs.pop("adversarial_classifier", False)
        if adversarial is False and "scale_adversarial_loss" not in plan_kwargs:
            return TrainingPlan(self.module, **plan_kwargs)
        # The classifier's initial weights come from the training seed, not the caller's RNG state.
        with torch.random.fork_rng(devices=[]):
            if seed is not None:
                torch.manual_seed(seed)
            return AdversarialTrainingPlan(self.module, adversarial_classifier=adversarial, **plan_kwargs)

    @classmethod
    def setup_anndata(
        cls,
        adata: AnnData,
        layer: str | None = None,
        batch_key: str | None = None,
        labels_key: str | None = None,
        size_factor_key: str | None = None,
        categorical_covariate_keys: Sequence[str] | None = None,
        continuous_covariate_keys: Sequence[str] | None = None,
    ) -> dict:
        """Validate ``adata`` and register how it maps to tensors.

        Parameters
        ----------
        adata
            AnnData with raw integer counts in ``X`` or ``layers[layer]``.
        layer
            Layer holding the counts; ``None`` uses ``X``.
        batch_key, labels_key
            ``obs`` columns with the batch and the cell label (categorical).
        size_factor_key
            ``obs`` column with positive per-cell size factors (replaces the library size).
        categorical_covariate_keys, continuous_covariate_keys
            Further ``obs`` columns injected into the decoder.

        Returns
        -------
        The registry (a JSON-serialisable dict), also stored in
        ``adata.uns["_snakevi_registry"]``.
        """
        from snakevi.data import setup_anndata

        return setup_anndata(
            adata,
            layer=layer,
            batch_key=batch_key,
            labels_key=labels_key,
            size_factor_key=size_factor_key,
            categorical_covariate_keys=categorical_covariate_keys,
            continuous_covariate_keys=continuous_covariate_keys,
            model_name=cls.__name__,
        )


__all__ = ["SCVI"]
