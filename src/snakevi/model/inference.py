"""Posterior queries shared by VAE-based models: latent space, expression, likelihoods.

Every method walks the data in minibatches with gradients off and the module in eval mode,
so calling it never changes the model. ``adata=None`` means the data the model was built on;
new data is checked against the model's registry first (same genes, known categories).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterator, Sequence

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd
    import torch


class InferenceMixin:
    """Queries for models whose module is a :class:`snakevi.module.VAE`."""

    # ---- plumbing ------------------------------------------------------------------------
    def _minibatches(self, adata, indices, batch_size: int | None) -> Iterator[dict[str, torch.Tensor]]:
        from snakevi.data import AnnDataLoader

        data = self._resolve_data(adata)
        loader = AnnDataLoader(data, indices=indices, batch_size=batch_size or 128, shuffle=False)
        device = self.device
        for batch in loader:
            yield {k: v.to(device, non_blocking=True) for k, v in batch.items()}

    def _cells_and_genes(self, adata, indices):
        data = self._resolve_data(adata)
        idx = np.arange(len(data)) if indices is None else np.asarray(indices)
        source = self.adata if adata is None else adata
        obs_names = None
        if source is not None and hasattr(source, "obs_names"):
            obs_names = np.asarray(source.obs_names)[idx]
        var_names = np.asarray(self.registry["fields"]["X"]["column_names"])
        return idx, obs_names, var_names

    def _gene_mask(self, gene_list: Sequence[str] | None) -> np.ndarray | slice:
        if gene_list is None:
            return slice(None)
        import pandas as pd  # here, not at the top: training imports no pandas

        var_names = pd.Index(self.registry["fields"]["X"]["column_names"])
        missing = [g for g in gene_list if g not in var_names]
        if missing:
            raise KeyError(f"gene_list has {len(missing)} genes the model does not know, e.g. {missing[:5]}.")
        return var_names.get_indexer(list(gene_list))

    def _batch_codes(self, transform_batch) -> list[int | None]:
        """Turn ``transform_batch`` (None, a category, or a list of them) into batch codes."""
        if transform_batch is None:
            return [None]
        values = transform_batch if isinstance(transform_batch, (list, tuple)) else [transform_batch]
        mapping = [str(c) for c in self.registry["fields"]["batch"]["categorical_mapping"]]
        codes = []
        for value in values:
            if str(value) not in mapping:
                raise ValueError(f"transform_batch {value!r} is not a batch the model knows; choose from {mapping}.")
            codes.append(mapping.index(str(value)))
        return codes

    def _run(self, fn, adata=None, indices=None, batch_size=None) -> list:
        import torch

        was_training = self.module.training
        self.module.eval()
        try:
            with torch.inference_mode():
                return [fn(batch) for batch in self._minibatches(adata, indices, batch_size)]
        finally:
            self.module.train(was_training)

    # ---- latent space -------------------------------------------------------------------
    def get_latent_representation(
        self,
        adata=None,
        indices: Sequence[int] | None = None,
        *,
        give_mean: bool = True,
        mc_samples: int = 5000,
        batch_size: int | None = None,
    ) -> np.ndarray:
        """Latent representation of each cell, shape ``(n_cells, n_latent)``.

        Parameters
        ----------
        give_mean
            Return the posterior mean (for ``latent_distribution="ln"``, a Monte Carlo mean
            over ``mc_samples`` draws); otherwise one posterior sample.
        """
        import torch

        ln = getattr(self.module, "latent_distribution", "normal") == "ln"

        def one(batch):
            out = self.module.inference(**self.module._get_inference_input(batch))
            qz = out["qz"]
            if not give_mean:
                z = out["z"]
            elif ln:
                z = torch.softmax(qz.sample((mc_samples,)), dim=-1).mean(0)
            else:
                z = qz.loc
            return z.float().cpu().numpy()

        return np.concatenate(self._run(one, adata, indices, batch_size), axis=0)

    # ---- expression ---------------------------------------------------------------------
    def get_normalized_expression(
        self,
        adata=None,
        indices: Sequence[int] | None = None,
        *,
        transform_batch=None,
        gene_list: Sequence[str] | None = None,
        library_size: float | str = 1,
        n_samples: int = 1,
        batch_size: int | None = None,
        return_mean: bool = True,
        return_numpy: bool | None = None,
    ) -> pd.DataFrame | np.ndarray:
        """Denoised, normalised expression ``library_size * px_scale``.

        Parameters
        ----------
        transform_batch
            Decode every cell as if it came from this batch (a category of ``batch_key``);
            a list averages over those batches. ``None`` uses each cell's own batch.
        gene_list
            Return only these genes.
        library_size
            Scale of the output: a number (1 gives proportions; 1e4 gives counts per 10k) or
            ``"latent"`` for the model's observed or inferred library size.
        n_samples
            Posterior samples per cell; averaged when ``return_mean``.
        return_numpy
            Return an array instead of a DataFrame (forced when samples are not averaged).

        Returns
        -------
        DataFrame cells x genes, or an array of shape ``(n_cells, n_genes)`` or
        ``(n_samples, n_cells, n_genes)``.
        """
        import torch

        genes = self._gene_mask(gene_list)
        codes = self._batch_codes(transform_batch)

        def one(batch):
            per_batch = []
            for code in codes:
                inf = self.module.inference(**self.module._get_inference_input(batch), n_samples=n_samples)
                gen_in = self.module._get_generative_input(batch, inf)
                gen = self.module.generative(**gen_in, transform_batch=code)
                px = gen["px"]
                values = px.mu if library_size == "latent" else px.scale * float(library_size)
                per_batch.append(values[..., genes])
            out = torch.stack(per_batch).mean(0)
            if n_samples > 1 and return_mean:
                out = out.mean(0)
            return out.float().cpu().numpy()

        parts = self._run(one, adata, indices, batch_size)
        axis = 1 if (n_samples > 1 and not return_mean) else 0
        values = np.concatenate(parts, axis=axis)
        if return_numpy or values.ndim == 3:
            return values
        idx, obs_names, var_names = self._cells_and_genes(adata, indices)
        columns = var_names[genes] if gene_list is not None else var_names
        import pandas as pd  # here, not at the top: training imports no pandas

        return pd.DataFrame(values, index=obs_names if obs_names is not None else idx, columns=columns)

    def get_likelihood_parameters(
        self,
        adata=None,
        indices: Sequence[int] | None = None,
        *,
        n_samples: int = 1,
        give_mean: bool = False,
        batch_size: int | None = None,
    ) -> dict[str, np.ndarray]:
        """Parameters of the count distribution per cell and gene.

        Returns
        -------
        dict with ``"mean"`` (``px_rate``), ``"dispersions"`` (``theta``) and, for ZINB,
        ``"dropout"`` (zero-inflation logits), each ``(n_cells, n_genes)`` (with a leading
        sample axis when ``n_samples > 1`` and not ``give_mean``).
        """
        import torch

        def one(batch):
            inf = self.module.inference(**self.module._get_inference_input(batch), n_samples=n_samples)
            gen = self.module.generative(**self.module._get_generative_input(batch, inf))
            px = gen["px"]
            out = {"mean": px.mu}
            if getattr(px, "theta", None) is not None:  # Poisson has no dispersion
                out["dispersions"] = torch.broadcast_to(px.theta, px.mu.shape)
            if getattr(px, "zi_logits", None) is not None:
                out["dropout"] = px.zi_logits
            if n_samples > 1 and give_mean:
                out = {k: v.mean(0) for k, v in out.items()}
            return {k: v.float().cpu().numpy() for k, v in out.items()}

        parts = self._run(one, adata, indices, batch_size)
        axis = 1 if (n_samples > 1 and not give_mean) else 0
        return {k: np.concatenate([p[k] for p in parts], axis=axis) for k in parts[0]}

    def posterior_predictive_sample(
        self,
        adata=None,
        indices: Sequence[int] | None = None,
        *,
        n_samples: int = 1,
        gene_list: Sequence[str] | None = None,
        batch_size: int | None = None,
    ):
        """Counts drawn from the posterior predictive distribution.

        Returns
        -------
        ``scipy.sparse.csr_matrix`` of shape ``(n_cells, n_genes)`` for ``n_samples=1``,
        else a dense array ``(n_cells, n_genes, n_samples)``.
        """
        import scipy.sparse as sp

        genes = self._gene_mask(gene_list)

        def one(batch):
            counts = self.module.sample(batch, n_samples=n_samples)
            return counts[:, genes].cpu().numpy() if n_samples == 1 else counts[:, genes, :].cpu().numpy()

        parts = np.concatenate(self._run(one, adata, indices, batch_size), axis=0)
        return sp.csr_matrix(parts) if n_samples == 1 else parts

    # ---- model fit ----------------------------------------------------------------------
    def _per_cell_losses(self, adata, indices, batch_size):
        def one(batch):
            _, _, losses = self.module(batch, loss_kwargs={"kl_weight": 1.0})
            rec = losses.reconstruction_loss
            rec = sum(rec.values()) if isinstance(rec, dict) else rec
            kl = losses.kl_local
            kl = sum(kl.values()) if isinstance(kl, dict) else kl
            return rec.double().cpu().numpy(), kl.double().cpu().numpy(), float(losses.kl_global_sum)

        return self._run(one, adata, indices, batch_size)

    def get_elbo(self, adata=None, indices: Sequence[int] | None = None, *, batch_size: int | None = None) -> float:
        """Evidence lower bound per cell, ``-(reconstruction + KL local)`` averaged over cells.

        Higher is better (as in scvi-tools, the global KL is left out).
        """
        parts = self._per_cell_losses(adata, indices, batch_size)
        rec = np.concatenate([p[0] for p in parts])
        kl = np.concatenate([p[1] for p in parts])
        return float(-(rec + kl).mean())

    def get_reconstruction_error(
        self, adata=None, indices: Sequence[int] | None = None, *, batch_size: int | None = None
    ) -> dict[str, float]:
        """Mean per-cell negative log-likelihood of the counts (lower is better).

        Returns
        -------
        ``{"reconstruction_loss": value}``.
        """
        parts = self._per_cell_losses(adata, indices, batch_size)
        return {"reconstruction_loss": float(np.concatenate([p[0] for p in parts]).mean())}

    def get_marginal_ll(
        self,
        adata=None,
        indices: Sequence[int] | None = None,
        *,
        n_mc_samples: int = 1000,
        batch_size: int | None = None,
        return_mean: bool = True,
    ) -> float | np.ndarray:
        """Importance-sampled log p(x) per cell (higher is better).

        Parameters
        ----------
        n_mc_samples
            Posterior samples per cell for the importance-sampling estimate.
        return_mean
            Average over cells; otherwise return one value per cell.
        """

        def one(batch):
            return self.module.marginal_ll(batch, n_mc_samples=n_mc_samples).double().cpu().numpy()

        values = np.concatenate(self._run(one, adata, indices, batch_size))
        return float(values.mean()) if return_mean else values
