"""``LinearSCVI``: scVI with a linear decoder (LDVAE, Svensson et al. 2020), as scvi-tools' ``scvi.model.LinearSCVI``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from snakevi.model.scvi import SCVI

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd
    from anndata import AnnData


class LinearSCVI(SCVI):
    """Linearly decoded VAE: scVI's encoder, a linear decoder whose weights explain each latent dimension.

    The decoder's mean is ``softmax(loadings @ z + batch terms)`` times the library, so
    :meth:`get_loadings` (genes x latent dimensions) says how much each dimension raises or
    lowers each gene, like the loadings of a factor analysis. The data setup is scvi-tools':
    counts (``layer``), ``batch_key`` and ``labels_key``, no covariates and no size factors.

    Parameters
    ----------
    adata
        AnnData registered with :meth:`LinearSCVI.setup_anndata` (or :meth:`SCVI.setup_anndata`
        without covariates), or a ``CellData``.
    n_hidden
        Nodes per hidden layer of the encoders.
    n_latent
        Dimensionality of the latent space (the loadings' columns).
    n_layers
        Hidden layers of the z encoder.
    dropout_rate
        Dropout in the encoders.
    dispersion
        ``"gene"``, ``"gene-batch"`` or ``"gene-label"``.
    gene_likelihood
        ``"nb"`` (default, as in scvi-tools), ``"zinb"`` or ``"poisson"``.
    latent_distribution
        ``"normal"`` or ``"ln"``.
    seed
        Seed of the weight initialisation and the default training seed.
    **model_kwargs
        Further :class:`~snakevi.module.LDVAE` arguments: ``use_batch_norm`` of the decoder
        (default True; scVI's ``"decoder"``/``"both"`` mean True, ``"encoder"``/``"none"``
        False), ``bias`` (default False), ``use_observed_lib_size`` (default False: a latent
        library, as in scvi-tools).

    Examples
    --------
    >>> import snakevi
    >>> from snakevi.model import LinearSCVI
    >>> adata = snakevi.data.simulate(n_cells=300, n_genes=50)
    >>> LinearSCVI.setup_anndata(adata, batch_key="batch")  # doctest: +ELLIPSIS
    {...}
    >>> model = LinearSCVI(adata, n_latent=4)
    >>> _ = model.train(max_epochs=2, enable_progress_bar=False)
    >>> model.get_loadings().shape
    (50, 4)
    """

    model_class = "linear_scvi"
    latent_key = "X_LinearSCVI"
    #: The registries it can use: its own, and the SCVI ones the workflow's register step writes.
    _compatible_registries = ("SCVI",)

    def __init__(
        self,
        adata,
        n_hidden: int = 128,
        n_latent: int = 10,
        n_layers: int = 1,
        dropout_rate: float = 0.1,
        dispersion: Literal["gene", "gene-batch", "gene-label"] = "gene",
        gene_likelihood: Literal["zinb", "nb", "poisson"] = "nb",
        latent_distribution: Literal["normal", "ln"] = "normal",
        *,
        seed: int | None = 0,
        **model_kwargs: Any,
    ) -> None:
        super().__init__(adata, n_hidden=n_hidden, n_latent=n_latent, n_layers=n_layers, dropout_rate=dropout_rate,
                         dispersion=dispersion, gene_likelihood=gene_likelihood,
                         latent_distribution=latent_distribution, seed=seed, **model_kwargs)

    @property
    def _module_cls(self):
        from snakevi.module import LDVAE

        return LDVAE

    @classmethod
    def check_training_registry(cls, registry: dict, source) -> None:
        """Refuse covariates and size factors: the linear decoder takes the latent code and the batch only."""
        s = registry["summary"]
        extra = [name for name, present in [
            ("setup.size_factor_key", s["has_size_factor"]),
            ("setup.categorical_covariate_keys", bool(s["n_cats_per_cov"])),
            ("setup.continuous_covariate_keys", bool(s["n_extra_continuous_covs"])),
        ] if present]
        if extra:
            raise ValueError(
                f"{source}: model_class linear_scvi takes no covariates or size factors (its setup is layer, "
                f"batch_key and labels_key, as in scvi-tools), but the data was registered with {extra}; "
                "register it without them, or use model_class scvi."
            )

    def _module_kwargs(self, model_kwargs: dict) -> dict:
        from snakevi.data import library_size_stats

        type(self).check_training_registry(self.registry, "LinearSCVI")
        kwargs = dict(model_kwargs)
        kwargs["n_layers_encoder"] = kwargs.pop("n_layers")
        norm = kwargs.get("use_batch_norm", True)
        if isinstance(norm, str):
            # scVI's spelling (the workflow config's model section): the encoders are always
            # batch-normalised here, so it only says whether the decoder is.
            kwargs["use_batch_norm"] = norm in ("decoder", "both")
        s = self.summary
        kwargs = dict(n_input=s["n_vars"], n_batch=s["n_batch"], n_labels=s["n_labels"], **kwargs)
        if not kwargs.get("use_observed_lib_size", False):
            # scvi-tools computes them always; the module uses them with a latent library (its default).
            kwargs["library_log_means"], kwargs["library_log_vars"] = library_size_stats(self.data)
        return kwargs

    def get_loadings(self) -> pd.DataFrame:
        """The decoder's loadings: genes (``var_names``) x latent dimensions (``Z_0``, ``Z_1``, ...).

        See :meth:`snakevi.module.LDVAE.get_loadings` for what they are.
        """
        import pandas as pd

        loadings = self.module.get_loadings()
        genes = self.registry["fields"]["X"]["column_names"]
        return pd.DataFrame(loadings, index=list(genes), columns=[f"Z_{i}" for i in range(loadings.shape[1])])

    @classmethod
    def load_query_data(cls, *args, **kwargs):
        """Not available: as in scvi-tools, LDVAE offers no reference mapping (scArches)."""
        raise ValueError("LinearSCVI does not map query data onto a reference (scvi-tools' LDVAE offers no "
                         "transfer learning); train a model on the reference and query cells together, or use "
                         "model_class scvi for the reference.")

    @classmethod
    def setup_anndata(
        cls,
        adata: AnnData,
        layer: str | None = None,
        batch_key: str | None = None,
        labels_key: str | None = None,
    ) -> dict:
        """Validate ``adata`` and register it for LinearSCVI (counts, batch and labels only).

        Returns
        -------
        The registry, also stored in ``adata.uns["_snakevi_registry"]``.
        """
        return super().setup_anndata(adata, layer=layer, batch_key=batch_key, labels_key=labels_key)


__all__ = ["LinearSCVI"]
