"""Estimators built on a trained VAE's posterior: predictive samples and marginal likelihood.

Free functions over the module's ``forward`` so ``vae.py`` holds only the model; ``VAE.sample``
and ``VAE.marginal_ll`` call these. Both follow scvi-tools' ``VAE.sample`` / ``VAE.marginal_ll``.
Call ``module.eval()`` first unless you want dropout and batch statistics in the draws.
"""

from __future__ import annotations

import math
import warnings
from typing import TYPE_CHECKING

import torch
from torch.distributions import Normal

from snakevi._constants import REGISTRY_KEYS
from snakevi.module.distributions import MAX_POISSON_RATE, Poisson

if TYPE_CHECKING:
    from snakevi.module.vae import VAE


@torch.inference_mode()
def posterior_predictive_sample(
    module: VAE, tensors: dict[str, torch.Tensor], n_samples: int = 1, max_poisson_rate: float = MAX_POISSON_RATE,
    generative_kwargs: dict | None = None,
) -> torch.Tensor:
    """Draw ``z ~ q(z|x)`` then ``x_hat ~ p(x|z)``, ``n_samples`` times per cell.

    ``generative_kwargs`` go to ``module.generative`` (e.g. ``{"transform_batch": 1}``).

    Returns
    -------
    CPU tensor ``(n_cells, n_genes)`` when ``n_samples == 1``, else ``(n_cells, n_genes, n_samples)``.
    """
    _, generative_outputs = module(tensors, inference_kwargs={"n_samples": n_samples},
                                  generative_kwargs=generative_kwargs, compute_loss=False)
    dist = generative_outputs["px"]
    if module.gene_likelihood == "poisson":
        dist = Poisson(torch.clamp(dist.rate, max=max_poisson_rate))
    samples = dist.sample()
    if n_samples > 1:
        samples = samples.permute(1, 2, 0)  # (n_samples, n_cells, n_genes) -> (n_cells, n_genes, n_samples)
    return samples.cpu()


@torch.inference_mode()
def importance_marginal_ll(
    module: VAE, tensors: dict[str, torch.Tensor], n_mc_samples: int, n_mc_samples_per_pass: int = 1
) -> torch.Tensor:
    """Importance-sampled per-cell ``log p(x)`` with ``q(z, l | x)`` as the proposal.

    ``log p(x) ~ logsumexp_k [log p(x|z_k,l_k) + log p(z_k) - log q(z_k|x)
    (+ log p(l_k) - log q(l_k|x))] - log K``, drawn in passes of ``n_mc_samples_per_pass``
    samples to bound memory.

    Returns
    -------
    CPU tensor ``(n_cells,)``.
    """
    if n_mc_samples_per_pass > n_mc_samples:
        warnings.warn(
            f"marginal_ll: n_mc_samples_per_pass={n_mc_samples_per_pass} exceeds "
            f"n_mc_samples={n_mc_samples}; using {n_mc_samples}.",
            RuntimeWarning,
            stacklevel=3,
        )
        n_mc_samples_per_pass = n_mc_samples
    x = tensors[REGISTRY_KEYS.X_KEY]
    to_sum = []
    # The last pass draws only what is left, so exactly n_mc_samples weights are averaged.
    for start in range(0, n_mc_samples, n_mc_samples_per_pass):
        n_now = min(n_mc_samples_per_pass, n_mc_samples - start)
        inference_outputs, generative_outputs = module(
            tensors, inference_kwargs={"n_samples": n_now}, compute_loss=False
        )
        qz, ql = inference_outputs["qz"], inference_outputs["ql"]
        z, library = inference_outputs["z"], inference_outputs["library"]
        log_p_x = generative_outputs["px"].log_prob(x).sum(-1)
        pz = Normal(torch.zeros_like(qz.loc), torch.ones_like(qz.scale), validate_args=False)
        log_w = pz.log_prob(z).sum(-1) + log_p_x - qz.log_prob(z).sum(-1)
        if not module.use_observed_lib_size:
            p_l = module.library_prior(tensors[REGISTRY_KEYS.BATCH_KEY])
            log_w = log_w + (p_l.log_prob(library).sum(-1) - ql.log_prob(library).sum(-1))
        to_sum.append(log_w.reshape(-1, x.shape[0]))
    return (torch.logsumexp(torch.cat(to_sum, dim=0), dim=0) - math.log(n_mc_samples)).cpu()
