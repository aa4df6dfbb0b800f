"""Latent-space and model-fit queries of VAE-based models (scvi-tools' ``VAEMixin``), plus the
expression queries (:mod:`snakevi.model.expression`): the ``InferenceMixin`` of SCVI and SCANVI.

Arguments in scvi-tools 1.4's order, so positional calls port as they are; see
:mod:`snakevi.model._queries` for ``adata``/``dataloader`` and the eval-mode, no-gradient passes.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np

from snakevi.model.expression import ExpressionMixin


class InferenceMixin(ExpressionMixin):
    """Queries for models whose module is a :class:`snakevi.module.VAE`."""

    # ---- latent space -------------------------------------------------------------------
    def get_latent_representation(
        self,
        adata=None,
        indices: Sequence[int] | None = None,
        give_mean: bool = True,
        mc_samples: int = 5000,
        batch_size: int | None = None,
        return_dist: bool = False,
        dataloader: Iterable | None = None,
    ) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """Latent representation of each cell, shape ``(n_cells, n_latent)``.

        Parameters
        ----------
        adata, indices
            Data (default: the model's own) and the cells of it to use (default: all).
        give_mean
            Return the posterior mean (for ``latent_distribution="ln"``, a Monte Carlo mean
            over ``mc_samples`` draws); otherwise one posterior sample.
        batch_size
            Cells per minibatch (default 128).
        return_dist
            Return ``(mean, variance)`` of the Normal ``q(z|x)`` instead, each ``(n_cells, n_latent)``.
        dataloader
            Minibatch dicts to use instead of ``adata``/``indices``.
        """
        import torch

        self._check_dataloader(adata, dataloader, indices=indices, batch_size=batch_size)
        ln = getattr(self.module, "latent_distribution", "normal") == "ln"

        def one(batch):
            out = self.module.inference(**self.module._get_inference_input(batch))
            qz = out["qz"]
            if return_dist:
                return qz.loc.float().cpu().numpy(), qz.scale.square().float().cpu().numpy()
            if not give_mean:
                z = out["z"]
            elif ln:
                z = torch.softmax(qz.sample((mc_samples,)), dim=-1).mean(0)
            else:
                z = qz.loc
            return z.float().cpu().numpy()

        parts = self._run(one, adata, indices, batch_size, dataloader)
        if return_dist:
            return np.concatenate([p[0] for p in parts], axis=0), np.concatenate([p[1] for p in parts], axis=0)
        return np.concatenate(parts, axis=0)

    def get_latent_library_size(
        self,
        adata=None,
        indices: Sequence[int] | None = None,
        give_mean: bool = True,
        batch_size: int | None = None,
        dataloader: Iterable | None = None,
    ) -> np.ndarray:
        """Library size of each cell, ``(n_cells, 1)`` (scvi-tools' ``get_latent_library_size``).

        Parameters
        ----------
        give_mean
            The mean of the posterior ``LogNormal`` of a latent library
            (``use_observed_lib_size=False``); a model with an observed library has none and
            raises. ``False``: ``exp(library)``, the observed total counts, or one posterior
            sample of a latent library.
        """
        import torch

        self._check_dataloader(adata, dataloader, indices=indices, batch_size=batch_size)

        def one(batch):
            out = self.module.inference(**self.module._get_inference_input(batch))
            if not give_mean:
                return torch.exp(out["library"]).float().cpu().numpy()
            ql = out["ql"]
            if ql is None:
                raise RuntimeError(
                    "get_latent_library_size: this model uses the observed library size "
                    "(use_observed_lib_size=True), so there is no posterior to average; pass give_mean=False "
                    "for the observed library sizes."
                )
            return torch.distributions.LogNormal(ql.loc, ql.scale).mean.float().cpu().numpy()

        return np.concatenate(self._run(one, adata, indices, batch_size, dataloader), axis=0)

    # ---- model fit ----------------------------------------------------------------------
    def _per_cell_losses(self, adata, indices, batch_size, dataloader=None) -> tuple[np.ndarray, np.ndarray]:
        """Per-cell reconstruction loss and local KL, each ``(n_cells,)`` float64, at ``kl_weight=1``."""
        self._check_dataloader(adata, dataloader, indices=indices, batch_size=batch_size)

        def one(batch):
            _, _, losses = self.module(batch, loss_kwargs={"kl_weight": 1.0})
            rec = losses.reconstruction_loss
            rec = sum(rec.values()) if isinstance(rec, dict) else rec
            kl = losses.kl_local
            kl = sum(kl.values()) if isinstance(kl, dict) else kl
            return rec.double().cpu().numpy(), kl.double().cpu().numpy()

        parts = self._run(one, adata, indices, batch_size, dataloader)
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    def get_elbo(
        self,
        adata=None,
        indices: Sequence[int] | None = None,
        batch_size: int | None = None,
        dataloader: Iterable | None = None,
        return_mean: bool = True,
    ) -> float | np.ndarray:
        """Evidence lower bound, ``-(reconstruction + KL local)`` per cell (higher is better).

        As in scvi-tools, the global KL is left out and one posterior sample is drawn per cell.

        Parameters
        ----------
        adata, indices
            Data (default: the model's own) and the cells of it to use (default: all).
        batch_size
            Cells per minibatch (default 128).
        dataloader
            Minibatch dicts to use instead of ``adata``/``indices``.
        return_mean
            Average over cells; otherwise an array ``(n_cells,)`` of per-cell values.
        """
        rec, kl = self._per_cell_losses(adata, indices, batch_size, dataloader)
        elbo = -(rec + kl)
        return float(elbo.mean()) if return_mean else elbo

    def get_reconstruction_error(
        self,
        adata=None,
        indices: Sequence[int] | None = None,
        batch_size: int | None = None,
        dataloader: Iterable | None = None,
        return_mean: bool = True,
    ) -> dict[str, float | np.ndarray]:
        """Negative log-likelihood of the counts given one posterior sample (lower is better).

        Parameters
        ----------
        adata, indices, batch_size, dataloader
            As for :meth:`get_elbo`.
        return_mean
            Average over cells; otherwise per-cell values ``(n_cells,)``.

        Returns
        -------
        ``{"reconstruction_loss": value}`` (a float, or an array with ``return_mean=False``).
        """
        rec, _ = self._per_cell_losses(adata, indices, batch_size, dataloader)
        return {"reconstruction_loss": float(rec.mean()) if return_mean else rec}

    def get_marginal_ll(
        self,
        adata=None,
        indices: Sequence[int] | None = None,
        n_mc_samples: int = 1000,
        batch_size: int | None = None,
        return_mean: bool = True,
        dataloader: Iterable | None = None,
    ) -> float | np.ndarray:
        """Importance-sampled log p(x) per cell (higher is better).

        Parameters
        ----------
        adata, indices, batch_size, dataloader
            As for :meth:`get_elbo`.
        n_mc_samples
            Posterior samples per cell for the importance-sampling estimate.
        return_mean
            Average over cells; otherwise return one value per cell.
        """
        self._check_dataloader(adata, dataloader, indices=indices, batch_size=batch_size)

        def one(batch):
            return self.module.marginal_ll(batch, n_mc_samples=n_mc_samples).double().cpu().numpy()

        values = np.concatenate(self._run(one, adata, indices, batch_size, dataloader))
        return float(values.mean()) if return_mean else values
