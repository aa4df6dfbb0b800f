"""scVI's variational autoencoder: the module behind SCVI (scvi-tools' ``scvi.module.VAE``).

Same constructor arguments and defaults, same submodules built in the same order (so the same
seed gives the same initial weights and the state_dict keys match), same inference /
generative / loss arithmetic. Not carried over: ``batch_representation="embedding"``,
``gene_likelihood="normal"``, minified data, ``extra_payload_autotune`` and the extra
encoder/decoder kwargs.

Overriding the batch at decode time (scvi-tools' ``transform_batch``) goes through
``generative_kwargs``: ``module(tensors, generative_kwargs={"transform_batch": 1})`` decodes
every cell as batch 1, which also picks batch 1's dispersion (``gene-batch``) and library prior.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch.distributions import Normal, kl_divergence

from snakevi._constants import REGISTRY_KEYS
from snakevi.module._vae_arguments import check_vae_arguments, library_prior_rows
from snakevi.module.base import BaseModuleClass, LossOutput
from snakevi.module.distributions import (
    MAX_POISSON_RATE,
    NegativeBinomial,
    Poisson,
    ZeroInflatedNegativeBinomial,
)
from snakevi.module.layers import DecoderSCVI, Encoder
from snakevi.module.posterior import importance_marginal_ll, posterior_predictive_sample

class VAE(BaseModuleClass):
    """Variational autoencoder of scVI (Lopez et al. 2018).

    Parameters
    ----------
    n_input
        Number of genes.
    n_batch
        Number of batches; ``0`` or ``1`` means no batch correction.
    n_labels
        Number of labels (used only by ``dispersion="gene-label"``).
    n_hidden
        Units per hidden layer of encoders and decoder.
    n_latent
        Latent dimensionality.
    n_layers
        Hidden layers of the z encoder and of the decoder (the library encoder has one).
    n_continuous_cov
        Number of continuous covariates (``"extra_continuous_covs"`` columns).
    n_cats_per_cov
        Categories of each categorical covariate (``"extra_categorical_covs"`` columns).
    dropout_rate
        Dropout in the encoders (the decoder has none).
    dispersion
        ``"gene"``, ``"gene-batch"``, ``"gene-label"`` or ``"gene-cell"``: what the NB inverse
        dispersion ``theta = exp(px_r)`` may vary with.
    log_variational
        Encode ``log1p(x)`` instead of ``x`` (numerical stability, not normalisation).
    gene_likelihood
        ``"zinb"``, ``"nb"`` or ``"poisson"``.
    latent_distribution
        ``"normal"``, or ``"ln"`` (logistic normal: softmax of the Normal sample).
    encode_covariates
        Give the encoders the batch and covariates too (the decoder always gets them).
    deeply_inject_covariates
        Inject categorical covariates into every hidden layer, not only the first.
    use_batch_norm, use_layer_norm
        ``"none"``, ``"encoder"``, ``"decoder"`` or ``"both"``.
    use_size_factor_key
        Use ``log(size_factor)`` from the minibatch as the library; implies an observed library
        and a softplus (not softmax) scale.
    use_observed_lib_size
        Use ``log(total counts)`` as the library; ``False`` learns a latent library with a
        per-batch Normal prior built from ``library_log_means`` / ``library_log_vars``.
    library_log_means, library_log_vars
        Per-batch mean and variance of log total counts, shape ``(1, n_batch)`` or
        ``(n_batch,)``; required when the library is latent; kept as buffers.
    var_activation
        Positive map for the encoder variances; default :func:`torch.exp`.
    """

    def __init__(
        self,
        n_input: int,
        n_batch: int = 0,
        n_labels: int = 0,
        n_hidden: int = 128,
        n_latent: int = 10,
        n_layers: int = 1,
        n_continuous_cov: int = 0,
        n_cats_per_cov: Sequence[int] | None = None,
        dropout_rate: float = 0.1,
        dispersion: str = "gene",
        log_variational: bool = True,
        gene_likelihood: str = "zinb",
        latent_distribution: str = "normal",
        encode_covariates: bool = False,
        deeply_inject_covariates: bool = True,
        use_batch_norm: str = "both",
        use_layer_norm: str = "none",
        use_size_factor_key: bool = False,
        use_observed_lib_size: bool = True,
        library_log_means: np.ndarray | None = None,
        library_log_vars: np.ndarray | None = None,
        var_activation: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ):
        super().__init__()
        check_vae_arguments(
            n_input=n_input, n_batch=n_batch, n_labels=n_labels, n_hidden=n_hidden, n_latent=n_latent,
            n_layers=n_layers, n_continuous_cov=n_continuous_cov, n_cats_per_cov=n_cats_per_cov,
            dropout_rate=dropout_rate, dispersion=dispersion, log_variational=log_variational,
            gene_likelihood=gene_likelihood, latent_distribution=latent_distribution,
            encode_covariates=encode_covariates, deeply_inject_covariates=deeply_inject_covariates,
            use_batch_norm=use_batch_norm, use_layer_norm=use_layer_norm, use_size_factor_key=use_size_factor_key,
            use_observed_lib_size=use_observed_lib_size, var_activation=var_activation,
        )
        n_cats_per_cov = [int(n) for n in (n_cats_per_cov or [])]

        self.n_input = n_input
        self.n_batch = n_batch
        self.n_labels = n_labels
        self.n_latent = n_latent
        self.dispersion = dispersion
        self.log_variational = log_variational
        self.gene_likelihood = gene_likelihood
        self.latent_distribution = latent_distribution
        self.encode_covariates = encode_covariates
        self.use_size_factor_key = use_size_factor_key
        self.use_observed_lib_size = use_size_factor_key or use_observed_lib_size

        if not self.use_observed_lib_size:
            means, variances = library_prior_rows(library_log_means, library_log_vars, n_batch)
            self.register_buffer("library_log_means", means)
            self.register_buffer("library_log_vars", variances)

        # Built in scvi-tools' order (px_r, z_encoder, l_encoder, decoder): same seed, same init.
        if dispersion == "gene":
            self.px_r = torch.nn.Parameter(torch.randn(n_input))
        elif dispersion == "gene-batch":
            self.px_r = torch.nn.Parameter(torch.randn(n_input, n_batch))
        elif dispersion == "gene-label":
            self.px_r = torch.nn.Parameter(torch.randn(n_input, n_labels))

        norm_enc = {
            "use_batch_norm": use_batch_norm in ("encoder", "both"),
            "use_layer_norm": use_layer_norm in ("encoder", "both"),
        }
        cat_list = [n_batch] + n_cats_per_cov
        encoder_cat_list = cat_list if encode_covariates else None
        n_input_encoder = n_input + n_continuous_cov * encode_covariates
        self.z_encoder = Encoder(
            n_input_encoder,
            n_latent,
            n_cat_list=encoder_cat_list,
            n_layers=n_layers,
            n_hidden=n_hidden,
            dropout_rate=dropout_rate,
            distribution=latent_distribution,
            inject_covariates=deeply_inject_covariates,
            var_activation=var_activation,
            return_dist=True,
            **norm_enc,
        )
        # Built even with an observed library, as scvi-tools does, so state_dicts line up.
        self.l_encoder = Encoder(
            n_input_encoder,
            1,
            n_layers=1,
            n_cat_list=encoder_cat_list,
            n_hidden=n_hidden,
            dropout_rate=dropout_rate,
            inject_covariates=deeply_inject_covariates,
            var_activation=var_activation,
            return_dist=True,
            **norm_enc,
        )
        self.decoder = DecoderSCVI(
            n_latent + n_continuous_cov,
            n_input,
            n_cat_list=cat_list,
            n_layers=n_layers,
            n_hidden=n_hidden,
            inject_covariates=deeply_inject_covariates,
            use_batch_norm=use_batch_norm in ("decoder", "both"),
            use_layer_norm=use_layer_norm in ("decoder", "both"),
            scale_activation="softplus" if use_size_factor_key else "softmax",
        )

    # ----------------------------------------------------------------- plumbing
    def _get_inference_input(self, tensors: dict[str, torch.Tensor]) -> dict:
        return {
            "x": tensors[REGISTRY_KEYS.X_KEY],
            "batch_index": tensors[REGISTRY_KEYS.BATCH_KEY],
            "cont_covs": tensors.get(REGISTRY_KEYS.CONT_COVS_KEY),
            "cat_covs": tensors.get(REGISTRY_KEYS.CAT_COVS_KEY),
        }

    def _get_generative_input(self, tensors: dict[str, torch.Tensor], inference_outputs: dict) -> dict:
        size_factor = tensors.get(REGISTRY_KEYS.SIZE_FACTOR_KEY)
        if self.use_size_factor_key and size_factor is None:
            raise ValueError(
                f"VAE was built with use_size_factor_key=True but the minibatch has no "
                f"{REGISTRY_KEYS.SIZE_FACTOR_KEY!r} entry; register a size_factor_key in setup_anndata."
            )
        return {
            "z": inference_outputs["z"],
            "library": inference_outputs["library"],
            "batch_index": tensors[REGISTRY_KEYS.BATCH_KEY],
            "y": tensors.get(REGISTRY_KEYS.LABELS_KEY),
            "cont_covs": tensors.get(REGISTRY_KEYS.CONT_COVS_KEY),
            "cat_covs": tensors.get(REGISTRY_KEYS.CAT_COVS_KEY),
            "size_factor": None if size_factor is None else torch.log(size_factor),
        }

    def library_prior(self, batch_index: torch.Tensor) -> Normal:
        """Per-cell Normal prior on the log library, ``(n_cells, 1)``, from the batch buffers.

        Only for a latent library (``use_observed_lib_size=False``); ``batch_index`` is ``(n_cells, 1)``.
        """
        # Indexing equals scvi-tools' one_hot(batch) @ buffer.T exactly, without the matmul.
        idx = batch_index.reshape(-1)
        means = self.library_log_means[0, idx].unsqueeze(-1)
        variances = self.library_log_vars[0, idx].unsqueeze(-1)
        return Normal(means, variances.sqrt(), validate_args=False)

    # ---------------------------------------------------------------- the model
    def inference(
        self,
        x: torch.Tensor,
        batch_index: torch.Tensor,
        cont_covs: torch.Tensor | None = None,
        cat_covs: torch.Tensor | None = None,
        n_samples: int = 1,
    ) -> dict:
        """Encode counts ``x`` ``(n_cells, n_genes)`` into ``q(z|x)`` and the library.

        Returns
        -------
        dict with ``"z"`` (``(n_cells, n_latent)``, or ``(n_samples, n_cells, n_latent)`` when
        ``n_samples > 1``), ``"qz"`` (Normal), ``"ql"`` (Normal or ``None`` with an observed
        library) and ``"library"`` (log library, ``(..., n_cells, 1)``).
        """
        library = torch.log(x.sum(1)).unsqueeze(1) if self.use_observed_lib_size else None
        x_ = torch.log1p(x) if self.log_variational else x
        encode_cov = self.encode_covariates
        encoder_input = torch.cat((x_, cont_covs), dim=-1) if cont_covs is not None and encode_cov else x_
        categorical_input = torch.split(cat_covs, 1, dim=1) if cat_covs is not None and encode_cov else ()

        qz, z = self.z_encoder(encoder_input, batch_index, *categorical_input)
        ql = None
        if not self.use_observed_lib_size:
            ql, library = self.l_encoder(encoder_input, batch_index, *categorical_input)

        if n_samples > 1:
            z = self.z_encoder.z_transformation(qz.sample((n_samples,)))
            if self.use_observed_lib_size:
                library = library.unsqueeze(0).expand(n_samples, library.size(0), library.size(1))
            else:
                library = ql.sample((n_samples,))
        return {"z": z, "qz": qz, "ql": ql, "library": library}

    def generative(
        self,
        z: torch.Tensor,
        library: torch.Tensor,
        batch_index: torch.Tensor,
        cont_covs: torch.Tensor | None = None,
        cat_covs: torch.Tensor | None = None,
        size_factor: torch.Tensor | None = None,
        y: torch.Tensor | None = None,
        transform_batch: int | torch.Tensor | None = None,
    ) -> dict:
        """Decode ``z`` into ``p(x|z, l)``; ``transform_batch`` decodes every cell as that batch.

        Returns
        -------
        dict with ``"px"`` (count distribution over ``(..., n_cells, n_genes)``), ``"pl"``
        (library prior or ``None``) and ``"pz"`` (standard Normal shaped like ``z``).
        """
        if cont_covs is None:
            decoder_input = z
        elif z.dim() != cont_covs.dim():
            decoder_input = torch.cat([z, cont_covs.unsqueeze(0).expand(z.size(0), -1, -1)], dim=-1)
        else:
            decoder_input = torch.cat([z, cont_covs], dim=-1)
        categorical_input = torch.split(cat_covs, 1, dim=1) if cat_covs is not None else ()
        if transform_batch is not None:
            batch_index = torch.ones_like(batch_index) * transform_batch
        if not self.use_size_factor_key:
            size_factor = library

        px_scale, px_r, px_rate, px_dropout = self.decoder(
            self.dispersion,
            decoder_input,
            size_factor,
            batch_index,
            *categorical_input,
            compute_dropout=self.gene_likelihood == "zinb",
        )

        if self.gene_likelihood == "poisson":
            px = Poisson(rate=px_rate, scale=px_scale)
        else:
            # Row selection equals scvi-tools' one_hot(index) @ px_r.T exactly, without the matmul.
            if self.dispersion == "gene-label":
                if y is None:
                    raise ValueError("VAE: dispersion='gene-label' needs the 'labels' entry in the minibatch.")
                px_r = self.px_r.T[y.reshape(-1)]
            elif self.dispersion == "gene-batch":
                px_r = self.px_r.T[batch_index.reshape(-1)]
            elif self.dispersion == "gene":
                px_r = self.px_r
            theta = torch.exp(px_r)
            if self.gene_likelihood == "zinb":
                px = ZeroInflatedNegativeBinomial(mu=px_rate, theta=theta, zi_logits=px_dropout, scale=px_scale)
            else:
                px = NegativeBinomial(mu=px_rate, theta=theta, scale=px_scale)

        pl = None if self.use_observed_lib_size else self.library_prior(batch_index)
        pz = Normal(torch.zeros_like(z), torch.ones_like(z), validate_args=False)
        return {"px": px, "pl": pl, "pz": pz}

    def loss(
        self,
        tensors: dict[str, torch.Tensor],
        inference_outputs: dict,
        generative_outputs: dict,
        kl_weight: float | torch.Tensor = 1.0,
    ) -> LossOutput:
        """Negative ELBO: ``mean(rec + kl_weight * kl_z + kl_l)`` (the library KL is not warmed up).

        Returns
        -------
        :class:`LossOutput` with per-cell ``reconstruction_loss`` and
        ``kl_local = {"kl_divergence_l", "kl_divergence_z"}``.
        """
        kl_z = kl_divergence(inference_outputs["qz"], generative_outputs["pz"]).sum(dim=-1)
        kl_l = self.library_kl(inference_outputs, generative_outputs, like=kl_z)
        rec = self.reconstruction_loss(tensors, generative_outputs)
        loss = torch.mean(rec + kl_weight * kl_z + kl_l)
        return LossOutput(
            loss=loss,
            reconstruction_loss=rec,
            kl_local={"kl_divergence_l": kl_l, "kl_divergence_z": kl_z},
        )

    def reconstruction_loss(self, tensors: dict[str, torch.Tensor], generative_outputs: dict) -> torch.Tensor:
        """Per-cell ``-log p(x | z, l)``, shape ``(n_cells,)`` (``(n_samples, n_cells)`` for 3-D outputs)."""
        x = tensors[REGISTRY_KEYS.X_KEY]
        px = generative_outputs["px"]
        log_factorial = tensors.get(REGISTRY_KEYS.X_LOG_FACTORIAL_KEY)
        if log_factorial is None:
            return -_log_prob_cell_sum(px, x, with_count_constant=True)
        # sum_g log(x_g!) came with the minibatch (computed once per cell from the sparse
        # counts): same value, without a dense lgamma per step.
        return log_factorial.reshape(-1) - _log_prob_cell_sum(px, x, with_count_constant=False)

    def library_kl(self, inference_outputs: dict, generative_outputs: dict, like: torch.Tensor) -> torch.Tensor:
        """Per-cell KL of the latent library to its prior; zeros shaped ``like`` for an observed library."""
        if self.use_observed_lib_size:
            return torch.zeros_like(like)
        return kl_divergence(inference_outputs["ql"], generative_outputs["pl"]).sum(dim=-1)

    # ---------------------------------------------------------------- helpers
    def sample(
        self, tensors: dict[str, torch.Tensor], n_samples: int = 1, max_poisson_rate: float = MAX_POISSON_RATE,
        generative_kwargs: dict | None = None,
    ) -> torch.Tensor:
        """Posterior-predictive counts; see :func:`snakevi.module.posterior.posterior_predictive_sample`.

        Returns
        -------
        CPU tensor ``(n_cells, n_genes)``, or ``(n_cells, n_genes, n_samples)`` when ``n_samples > 1``.
        """
        return posterior_predictive_sample(self, tensors, n_samples, max_poisson_rate, generative_kwargs)

    def marginal_ll(
        self, tensors: dict[str, torch.Tensor], n_mc_samples: int, n_mc_samples_per_pass: int = 1
    ) -> torch.Tensor:
        """Importance-sampled per-cell ``log p(x)``, CPU ``(n_cells,)``.

        See :func:`snakevi.module.posterior.importance_marginal_ll`.
        """
        return importance_marginal_ll(self, tensors, n_mc_samples, n_mc_samples_per_pass)


def _log_prob_cell_sum(px, x: torch.Tensor, *, with_count_constant: bool) -> torch.Tensor:
    """``px.log_prob(x).sum(-1)``: on the CPU the NB/ZINB count terms at the non-zero counts only
    (:func:`snakevi.module.distributions.log_zinb_positive_cell_sum`). On a GPU the dense form:
    finding the non-zeros there would make the host wait every step."""
    cell_sum = getattr(px, "log_prob_cell_sum", None)
    if cell_sum is not None and x.dim() == 2 and x.device.type == "cpu" and px.mu.shape == x.shape:
        return cell_sum(x, with_count_constant=with_count_constant)
    return px.log_prob(x, with_count_constant=with_count_constant).sum(-1)
