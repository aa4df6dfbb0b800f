"""The linearly decoded VAE (LDVAE, Svensson et al. 2020): scvi-tools' ``scvi.module.LDVAE``.

The encoders are scVI's; the decoder is one linear map from the latent code (and the batch's
one-hot columns) to the genes, optionally batch-normalised, then a softmax, so each latent
dimension's effect on each gene is a weight (:meth:`LDVAE.get_loadings`). Same constructor
arguments and defaults as scvi-tools (``gene_likelihood="nb"``, a latent library), the same
submodules built in the same order (same seed, same initial weights, same state_dict keys).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch
from torch import nn

from snakevi.module.layers import Encoder, FCLayers
from snakevi.module.vae import VAE


class LinearDecoderSCVI(nn.Module):
    """Map a latent code linearly to the count distribution's parameters (scvi-tools' ``LinearDecoderSCVI``).

    ``px_scale = softmax(BN(W [z, onehot(batch)] + b))``: the ``factor_regressor`` (one Linear
    block, no activation, no dropout) gives the gene scores; a second block of the same shape
    gives the zero-inflation logits.

    Parameters
    ----------
    n_input
        Latent width.
    n_output
        Number of genes.
    n_cat_list
        Categories per categorical covariate (the batch); each is one-hot and concatenated onto ``z``.
    use_batch_norm, use_layer_norm
        Normalise the linear output (``BatchNorm1d(momentum=0.01, eps=0.001)``; ``LayerNorm``).
    bias
        Give the Linear layers a bias.
    """

    def __init__(
        self,
        n_input: int,
        n_output: int,
        n_cat_list: Iterable[int] | None = None,
        use_batch_norm: bool = False,
        use_layer_norm: bool = False,
        bias: bool = False,
    ):
        super().__init__()
        block = dict(n_in=n_input, n_out=n_output, n_cat_list=n_cat_list, n_layers=1, use_activation=False,
                     use_batch_norm=use_batch_norm, use_layer_norm=use_layer_norm, bias=bias, dropout_rate=0)
        self.factor_regressor = FCLayers(**block)
        self.px_dropout_decoder = FCLayers(**block)

    def forward(self, dispersion: str, z: torch.Tensor, library: torch.Tensor, *cat_list: torch.Tensor | None,
                compute_dropout: bool = True):
        """Decode; same signature and outputs as :meth:`snakevi.module.DecoderSCVI.forward`.

        Returns
        -------
        ``(px_scale, None, px_rate, px_dropout)``: no per-cell dispersion head.
        """
        px_scale = torch.softmax(self.factor_regressor(z, *cat_list), dim=-1)
        px_dropout = self.px_dropout_decoder(z, *cat_list) if compute_dropout else None
        px_rate = torch.exp(library) * px_scale
        return px_scale, None, px_rate, px_dropout


class LDVAE(VAE):
    """scVI's VAE with a linear decoder: interpretable per-gene loadings of each latent dimension.

    Parameters
    ----------
    n_input, n_batch, n_labels, n_hidden, n_latent, dropout_rate, dispersion, log_variational, latent_distribution
        As for :class:`~snakevi.module.VAE` (``dispersion="gene-cell"`` is not available: the
        linear decoder has no dispersion head).
    n_layers_encoder
        Hidden layers of the z encoder (the library encoder has one).
    gene_likelihood
        ``"nb"`` (default), ``"zinb"`` or ``"poisson"``.
    use_batch_norm
        Batch-normalise the decoder's output (the encoders always are, as in scvi-tools).
    bias
        Give the decoder's linear map a bias.
    use_observed_lib_size
        ``False`` (default, as in scvi-tools): a latent library with a per-batch prior from
        ``library_log_means`` / ``library_log_vars``.
    **kwargs
        Further :class:`~snakevi.module.VAE` arguments (``library_log_means``, ``library_log_vars``, ...).
    """

    def __init__(
        self,
        n_input: int,
        n_batch: int = 0,
        n_labels: int = 0,
        n_hidden: int = 128,
        n_latent: int = 10,
        n_layers_encoder: int = 1,
        dropout_rate: float = 0.1,
        dispersion: str = "gene",
        log_variational: bool = True,
        gene_likelihood: str = "nb",
        use_batch_norm: bool = True,
        bias: bool = False,
        latent_distribution: str = "normal",
        use_observed_lib_size: bool = False,
        **kwargs,
    ):
        if dispersion == "gene-cell":
            raise ValueError("LDVAE: dispersion='gene-cell' needs a decoder head the linear decoder does not have; "
                             "use 'gene', 'gene-batch' or 'gene-label'.")
        if not isinstance(use_batch_norm, bool) or not isinstance(bias, bool):
            raise ValueError(f"LDVAE: use_batch_norm and bias must be True or False, got {use_batch_norm!r}, {bias!r}.")
        super().__init__(
            n_input=n_input, n_batch=n_batch, n_labels=n_labels, n_hidden=n_hidden, n_latent=n_latent,
            n_layers=n_layers_encoder, dropout_rate=dropout_rate, dispersion=dispersion,
            log_variational=log_variational, gene_likelihood=gene_likelihood,
            latent_distribution=latent_distribution, use_observed_lib_size=use_observed_lib_size, **kwargs,
        )
        self.use_batch_norm = use_batch_norm
        # Rebuilt after the VAE's own, in scvi-tools' order: the same seed gives the same weights.
        self.z_encoder = Encoder(n_input, n_latent, n_layers=n_layers_encoder, n_hidden=n_hidden,
                                 dropout_rate=dropout_rate, distribution=latent_distribution, use_batch_norm=True,
                                 use_layer_norm=False, return_dist=True)
        self.l_encoder = Encoder(n_input, 1, n_layers=1, n_hidden=n_hidden, dropout_rate=dropout_rate,
                                 use_batch_norm=True, use_layer_norm=False, return_dist=True)
        self.decoder = LinearDecoderSCVI(n_latent, n_input, n_cat_list=[n_batch], use_batch_norm=use_batch_norm,
                                         use_layer_norm=False, bias=bias)

    @torch.inference_mode()
    def get_loadings(self) -> np.ndarray:
        """Per-gene weight of each latent dimension in the decoder, ``(n_genes, n_latent)``.

        ``diag(gamma / sqrt(running_var + eps)) @ W`` with the decoder's batch norm (just ``W``
        without it), less the batch columns: what a unit of ``z_k`` adds to gene ``g``'s score
        before the softmax (in evaluation mode).
        """
        block = self.decoder.factor_regressor.fc_layers[0]
        w = block[0].weight
        if self.use_batch_norm:
            bn = block[1]
            # Row scaling, the same numbers as scvi-tools' diag(b) @ W without a genes x genes matrix.
            w = (bn.weight / torch.sqrt(bn.running_var + bn.eps)).unsqueeze(1) * w
        loadings = w.detach().cpu().numpy()
        if self.n_batch > 1:
            loadings = loadings[:, : -self.n_batch]
        return loadings
