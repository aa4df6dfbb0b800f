"""The VAE constructor's argument checks and its per-batch library prior (see :class:`~snakevi.module.VAE`).

Kept apart from the module so ``vae.py`` reads as the network: what its arguments may be, and
how the library prior's means and variances become ``(1, n_batch)`` buffers.
"""

from __future__ import annotations

import numpy as np
import torch

from snakevi.module._arguments import check_choice, check_flag, check_int, check_ints, check_rate

_CHOICES = {
    "dispersion": ("gene", "gene-batch", "gene-label", "gene-cell"),
    "gene_likelihood": ("zinb", "nb", "poisson"),
    "latent_distribution": ("normal", "ln"),
    "use_batch_norm": ("none", "encoder", "decoder", "both"),
    "use_layer_norm": ("none", "encoder", "decoder", "both"),
}


def _as_prior_row(name: str, values, n_expected: int) -> torch.Tensor:
    """``(n_batch,)`` or ``(1, n_batch)`` array-like -> float32 tensor ``(1, n_batch)``."""
    row = torch.as_tensor(np.asarray(values, dtype=np.float64)).float().reshape(1, -1)
    if row.shape[1] != n_expected:
        raise ValueError(
            f"VAE: {name} has {row.shape[1]} entries but the model has {n_expected} batch(es); "
            f"pass one value per batch, shape (1, n_batch) or (n_batch,)."
        )
    return row


def check_vae_arguments(
    *, n_input, n_batch, n_labels, n_hidden, n_latent, n_layers, n_continuous_cov, n_cats_per_cov, dropout_rate,
    dispersion, log_variational, gene_likelihood, latent_distribution, encode_covariates, deeply_inject_covariates,
    use_batch_norm, use_layer_norm, use_size_factor_key, use_observed_lib_size, var_activation,
) -> None:
    """Refuse (``ValueError``, naming the argument and what to pass) a bad VAE constructor argument."""
    for name, value, minimum in [("n_input", n_input, 1), ("n_batch", n_batch, 0), ("n_labels", n_labels, 0),
                                 ("n_hidden", n_hidden, 1), ("n_latent", n_latent, 1), ("n_layers", n_layers, 1),
                                 ("n_continuous_cov", n_continuous_cov, 0)]:
        check_int("VAE", name, value, minimum)
    check_ints("VAE", "n_cats_per_cov", n_cats_per_cov or [], 1)
    check_rate("VAE", "dropout_rate", dropout_rate)
    for name, value in [("log_variational", log_variational), ("encode_covariates", encode_covariates),
                        ("deeply_inject_covariates", deeply_inject_covariates),
                        ("use_size_factor_key", use_size_factor_key),
                        ("use_observed_lib_size", use_observed_lib_size)]:
        check_flag("VAE", name, value)
    for name, value in [
        ("dispersion", dispersion),
        ("gene_likelihood", gene_likelihood),
        ("latent_distribution", latent_distribution),
        ("use_batch_norm", use_batch_norm),
        ("use_layer_norm", use_layer_norm),
    ]:
        check_choice("VAE", name, value, _CHOICES[name])
    if dispersion == "gene-batch" and n_batch < 1:
        raise ValueError("VAE: dispersion='gene-batch' needs n_batch >= 1; got n_batch=0.")
    if dispersion == "gene-label" and n_labels < 1:
        raise ValueError("VAE: dispersion='gene-label' needs n_labels >= 1; got n_labels=0.")
    if var_activation is not None and not callable(var_activation):
        raise ValueError(f"VAE: var_activation must be a callable or None, got {var_activation!r}.")


def library_prior_rows(library_log_means, library_log_vars, n_batch: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The latent library's prior: means and variances as float32 ``(1, max(n_batch, 1))`` tensors."""
    if library_log_means is None or library_log_vars is None:
        raise ValueError(
            "VAE: use_observed_lib_size=False needs library_log_means and library_log_vars "
            "(per-batch mean and variance of log total counts)."
        )
    n_prior = max(n_batch, 1)
    means = _as_prior_row("library_log_means", library_log_means, n_prior)
    variances = _as_prior_row("library_log_vars", library_log_vars, n_prior)
    return means, variances
