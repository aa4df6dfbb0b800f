"""The networks of scVI: fully-connected stacks with covariate injection, encoder, decoder.

Layer structure, attribute names and construction order follow scvi-tools'
``scvi/nn/_base_components.py`` (``FCLayers``, ``Encoder``, ``DecoderSCVI``), so a state_dict
has the same keys and shapes, and under the same seed the initial weights are the same.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Iterable, Sequence
from typing import Literal

import torch
from torch import nn
from torch.distributions import Normal


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x


class FCLayers(nn.Module):
    """Fully-connected layers (Linear -> BatchNorm -> LayerNorm -> ReLU -> Dropout), with covariates.

    Each categorical covariate with more than one category is one-hot encoded; the continuous
    covariates and the one-hot blocks are concatenated (in that order) onto the input of layer 0
    and, when ``inject_covariates``, onto the input of every later layer too. Categoricals with
    ``n_cat <= 1`` carry no information and are skipped (no input columns).

    Parameters
    ----------
    n_in
        Input width.
    n_out
        Output width.
    n_cat_list
        Number of categories of each categorical covariate, in the order they are passed to
        :meth:`forward`.
    n_cont
        Number of continuous covariates (passed as ``cont``).
    n_layers
        Number of Linear blocks; hidden blocks have ``n_hidden`` units.
    n_hidden
        Width of the hidden blocks.
    dropout_rate
        Dropout after each block; ``0`` means no Dropout module.
    use_batch_norm
        Add ``BatchNorm1d(momentum=0.01, eps=0.001)`` (scvi-tools' TensorFlow-era values).
    use_layer_norm
        Add ``LayerNorm(elementwise_affine=False)``.
    use_activation
        Add the activation.
    bias
        Linear layers have a bias.
    inject_covariates
        Inject covariates into every block, not only the first.
    activation_fn
        Activation module class.
    """

    def __init__(
        self,
        n_in: int,
        n_out: int,
        n_cat_list: Iterable[int] | None = None,
        n_cont: int = 0,
        n_layers: int = 1,
        n_hidden: int = 128,
        dropout_rate: float = 0.1,
        use_batch_norm: bool = True,
        use_layer_norm: bool = False,
        use_activation: bool = True,
        bias: bool = True,
        inject_covariates: bool = True,
        activation_fn: type[nn.Module] = nn.ReLU,
    ):
        super().__init__()
        self.inject_covariates = inject_covariates
        # n_cat <= 1 becomes 0 so positions still line up with the arguments of forward().
        self.n_cat_list = [n_cat if n_cat > 1 else 0 for n_cat in (n_cat_list or [])]
        self.n_cont = n_cont
        self.n_cov = n_cont + sum(self.n_cat_list)
        dims = [n_in] + (n_layers - 1) * [n_hidden] + [n_out]
        blocks = []
        for i, (d_in, d_out) in enumerate(zip(dims[:-1], dims[1:])):
            # None placeholders keep the submodule indices (hence state_dict keys) of scvi-tools.
            block = nn.Sequential(
                nn.Linear(d_in + self.n_cov * self.inject_into_layer(i), d_out, bias=bias),
                nn.BatchNorm1d(d_out, momentum=0.01, eps=0.001) if use_batch_norm else None,
                nn.LayerNorm(d_out, elementwise_affine=False) if use_layer_norm else None,
                activation_fn() if use_activation else None,
                nn.Dropout(p=dropout_rate) if dropout_rate > 0 else None,
            )
            blocks.append((f"Layer {i}", block))
        self.fc_layers = nn.Sequential(collections.OrderedDict(blocks))

    def inject_into_layer(self, layer_num: int) -> bool:
        """Whether block ``layer_num`` receives the covariates."""
        return layer_num == 0 or self.inject_covariates

    def _covariates(self, x: torch.Tensor, cat_list: Sequence[torch.Tensor | None], cont: torch.Tensor | None):
        if len(cat_list) < len(self.n_cat_list):
            raise ValueError(
                f"FCLayers was built for {len(self.n_cat_list)} categorical covariates "
                f"but got {len(cat_list)}; pass one code tensor per entry of n_cat_list."
            )
        parts = [] if cont is None else [cont.to(x.dtype)]
        # Extra trailing arguments are ignored, as in scvi-tools (the decoder is handed labels).
        for n_cat, cat in zip(self.n_cat_list, cat_list):
            if n_cat == 0:
                continue
            if cat is None:
                raise ValueError(f"A categorical covariate with {n_cat} categories was passed as None.")
            parts.append(nn.functional.one_hot(cat.reshape(cat.shape[0]), n_cat).to(x.dtype))
        if not parts:
            return None
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=-1)

    @staticmethod
    def _batch_norm(layer: nn.BatchNorm1d, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 3:
            return layer(x)
        if layer.training:
            # Per-sample statistics, as scvi-tools does for (n_samples, n_cells, width) input.
            return torch.stack([layer(s) for s in x], dim=0)
        # Running statistics are elementwise, so one call on the flattened input is identical.
        return layer(x.reshape(-1, x.shape[-1])).reshape(x.shape)

    def forward(
        self, x: torch.Tensor, *cat_list: torch.Tensor | None, cont: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Apply the blocks.

        Parameters
        ----------
        x
            Input, shape ``(n_cells, n_in)`` or ``(n_samples, n_cells, n_in)``.
        *cat_list
            Integer codes, shape ``(n_cells, 1)``, one per entry of ``n_cat_list``.
        cont
            Continuous covariates, shape ``(n_cells, n_cont)``.

        Returns
        -------
        Tensor of shape ``(..., n_out)``.
        """
        cov = self._covariates(x, cat_list, cont)
        if cov is not None and x.dim() == 3:
            cov = cov.unsqueeze(0).expand(x.shape[0], -1, -1)
        for i, block in enumerate(self.fc_layers):
            for layer in block:
                if layer is None:
                    continue
                if isinstance(layer, nn.Linear):
                    if cov is not None and self.inject_into_layer(i):
                        x = torch.cat((x, cov), dim=-1)
                    x = layer(x)
                elif isinstance(layer, nn.BatchNorm1d):
                    x = self._batch_norm(layer, x)
                else:
                    x = layer(x)
        return x


class Encoder(nn.Module):
    """Map data to the mean and variance of a diagonal Normal and draw a sample.

    ``q_v = var_activation(var_encoder(h)) + var_eps``; the sample is a reparametrised draw of
    ``Normal(q_m, sqrt(q_v))``, passed through softmax when ``distribution="ln"`` (logistic
    normal).

    Parameters
    ----------
    n_input
        Input width.
    n_output
        Latent width.
    n_cat_list
        Categories per categorical covariate (see :class:`FCLayers`).
    n_layers
        Hidden blocks.
    n_hidden
        Hidden width.
    dropout_rate
        Dropout in the hidden blocks.
    distribution
        ``"normal"`` or ``"ln"``.
    var_eps
        Floor added to the variance.
    var_activation
        Maps the raw output to a positive variance; default :func:`torch.exp`.
    return_dist
        Return ``(Normal, latent)`` instead of ``(q_m, q_v, latent)``.
    **kwargs
        Passed to :class:`FCLayers` (``use_batch_norm``, ``use_layer_norm``, ``inject_covariates``...).
    """

    def __init__(
        self,
        n_input: int,
        n_output: int,
        n_cat_list: Iterable[int] | None = None,
        n_layers: int = 1,
        n_hidden: int = 128,
        dropout_rate: float = 0.1,
        distribution: Literal["normal", "ln"] = "normal",
        var_eps: float = 1e-4,
        var_activation: Callable[[torch.Tensor], torch.Tensor] | None = None,
        return_dist: bool = False,
        **kwargs,
    ):
        super().__init__()
        self.distribution = distribution
        self.var_eps = var_eps
        self.encoder = FCLayers(
            n_in=n_input,
            n_out=n_hidden,
            n_cat_list=n_cat_list,
            n_layers=n_layers,
            n_hidden=n_hidden,
            dropout_rate=dropout_rate,
            **kwargs,
        )
        self.mean_encoder = nn.Linear(n_hidden, n_output)
        self.var_encoder = nn.Linear(n_hidden, n_output)
        self.return_dist = return_dist
        self.z_transformation = nn.Softmax(dim=-1) if distribution == "ln" else _identity
        self.var_activation = torch.exp if var_activation is None else var_activation

    def forward(self, x: torch.Tensor, *cat_list: torch.Tensor | None):
        """Encode ``x`` of shape ``(n_cells, n_input)``.

        Returns
        -------
        ``(q_m, q_v, latent)``, each ``(n_cells, n_output)``; or ``(Normal(q_m, sqrt(q_v)), latent)``
        when ``return_dist``.
        """
        q = self.encoder(x, *cat_list)
        q_m = self.mean_encoder(q)
        q_v = self.var_activation(self.var_encoder(q)) + self.var_eps
        dist = Normal(q_m, q_v.sqrt(), validate_args=False)
        latent = self.z_transformation(dist.rsample())
        if self.return_dist:
            return dist, latent
        return q_m, q_v, latent


class DecoderSCVI(nn.Module):
    """Map a latent code to the parameters of the count distribution.

    Parameters
    ----------
    n_input
        Latent width (plus continuous covariates, which the VAE concatenates).
    n_output
        Number of genes.
    n_cat_list
        Categories per categorical covariate (batch first).
    n_layers
        Hidden blocks (no dropout in the decoder, as in scvi-tools).
    n_hidden
        Hidden width.
    inject_covariates
        Inject covariates into every hidden block.
    use_batch_norm, use_layer_norm
        Normalisation in the hidden blocks.
    scale_activation
        ``"softmax"`` (expression proportions; the library multiplies them) or ``"softplus"``
        (used with size factors).
    **kwargs
        Passed to :class:`FCLayers`.
    """

    def __init__(
        self,
        n_input: int,
        n_output: int,
        n_cat_list: Iterable[int] | None = None,
        n_layers: int = 1,
        n_hidden: int = 128,
        inject_covariates: bool = True,
        use_batch_norm: bool = False,
        use_layer_norm: bool = False,
        scale_activation: Literal["softmax", "softplus"] = "softmax",
        **kwargs,
    ):
        super().__init__()
        if scale_activation not in ("softmax", "softplus"):
            raise ValueError(f"scale_activation={scale_activation!r} is not one of 'softmax', 'softplus'.")
        self.px_decoder = FCLayers(
            n_in=n_input,
            n_out=n_hidden,
            n_cat_list=n_cat_list,
            n_layers=n_layers,
            n_hidden=n_hidden,
            dropout_rate=0,
            inject_covariates=inject_covariates,
            use_batch_norm=use_batch_norm,
            use_layer_norm=use_layer_norm,
            **kwargs,
        )
        activation = nn.Softmax(dim=-1) if scale_activation == "softmax" else nn.Softplus()
        self.px_scale_decoder = nn.Sequential(nn.Linear(n_hidden, n_output), activation)
        # Always built (as in scvi-tools) so the state_dict does not depend on the likelihood.
        self.px_r_decoder = nn.Linear(n_hidden, n_output)
        self.px_dropout_decoder = nn.Linear(n_hidden, n_output)

    def forward(
        self,
        dispersion: str,
        z: torch.Tensor,
        library: torch.Tensor,
        *cat_list: torch.Tensor | None,
        compute_dropout: bool = True,
    ):
        """Decode.

        Parameters
        ----------
        dispersion
            The VAE's dispersion mode; ``px_r`` is computed only for ``"gene-cell"``.
        z
            Decoder input, ``(n_cells, n_input)`` or ``(n_samples, n_cells, n_input)``.
        library
            Log library size (or log size factor), broadcastable to ``(..., n_cells, 1)``.
        *cat_list
            Integer codes, one per categorical covariate.
        compute_dropout
            Compute the zero-inflation logits; ``False`` skips a Linear layer when the
            likelihood has no zero inflation (``px_dropout`` is then ``None``).

        Returns
        -------
        ``(px_scale, px_r, px_rate, px_dropout)``; ``px_rate = exp(library) * px_scale``.
        """
        px = self.px_decoder(z, *cat_list)
        px_scale = self.px_scale_decoder(px)
        px_dropout = self.px_dropout_decoder(px) if compute_dropout else None
        px_rate = torch.exp(library) * px_scale
        px_r = self.px_r_decoder(px) if dispersion == "gene-cell" else None
        return px_scale, px_r, px_rate, px_dropout


class Decoder(nn.Module):
    """Map a latent code to the mean and variance of a diagonal Normal (scvi-tools' ``nn.Decoder``).

    Used by SCANVAE for ``p(z1 | z2, y)``. ``p_v = exp(var_decoder(h))``.

    Parameters
    ----------
    n_input
        Input width.
    n_output
        Output width.
    n_cat_list
        Categories per categorical covariate (see :class:`FCLayers`).
    n_layers
        Hidden blocks (no dropout, as in scvi-tools).
    n_hidden
        Hidden width.
    **kwargs
        Passed to :class:`FCLayers` (``use_batch_norm``, ``use_layer_norm``...).
    """

    def __init__(
        self,
        n_input: int,
        n_output: int,
        n_cat_list: Iterable[int] | None = None,
        n_layers: int = 1,
        n_hidden: int = 128,
        **kwargs,
    ):
        super().__init__()
        self.decoder = FCLayers(
            n_in=n_input,
            n_out=n_hidden,
            n_cat_list=n_cat_list,
            n_layers=n_layers,
            n_hidden=n_hidden,
            dropout_rate=0,
            **kwargs,
        )
        self.mean_decoder = nn.Linear(n_hidden, n_output)
        self.var_decoder = nn.Linear(n_hidden, n_output)

    def forward(self, x: torch.Tensor, *cat_list: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Decode ``x`` ``(n_cells, n_input)``; returns ``(p_m, p_v)``, each ``(n_cells, n_output)``."""
        p = self.decoder(x, *cat_list)
        return self.mean_decoder(p), torch.exp(self.var_decoder(p))
