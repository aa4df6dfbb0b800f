"""Expression queries of VAE-based models (scvi-tools' ``RNASeqMixin``): denoised expression,
likelihood parameters, posterior predictive counts.

Arguments in scvi-tools 1.4's order, so positional calls port as they are.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterable, Sequence

import numpy as np

from snakevi.model._queries import QueryPlumbing

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd


def _check_weights(weights) -> None:
    if weights in (None, "uniform"):
        return
    if weights == "importance":
        raise NotImplementedError(
            "get_normalized_expression: weights='importance' (importance-weighted posterior samples) is not "
            "supported by snakevi; use weights='uniform' (the default)."
        )
    raise ValueError(f"get_normalized_expression: weights={weights!r} is not valid; choose 'uniform' or 'importance'.")


class ExpressionMixin(QueryPlumbing):
    """Expression queries for models whose module is a :class:`snakevi.module.VAE`."""

    def get_normalized_expression(
        self,
        adata=None,
        indices: Sequence[int] | None = None,
        transform_batch=None,
        gene_list: Sequence[str] | None = None,
        library_size: float | str = 1,
        n_samples: int = 1,
        n_samples_overall: int | None = None,
        weights: str | None = None,
        batch_size: int | None = None,
        return_mean: bool = True,
        return_numpy: bool | None = None,
        silent: bool = True,
        dataloader: Iterable | None = None,
    ) -> pd.DataFrame | np.ndarray:
        """Denoised, normalised expression ``library_size * px_scale``.

        Parameters
        ----------
        adata, indices
            Data (default: the model's own) and the cells of it to use (default: all).
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
        n_samples_overall
            Instead of per-cell values, this many rows drawn (with replacement, NumPy's global
            RNG) from posterior samples of all the cells: an array ``(n_samples_overall,
            n_genes)``. Replaces ``n_samples``.
        weights
            ``None`` or ``"uniform"``; scvi-tools' ``"importance"`` is not supported (an error).
        batch_size
            Cells per minibatch (default 128).
        return_mean
            Average the ``n_samples`` samples.
        return_numpy
            Return an array instead of a DataFrame (forced when samples are not averaged, with
            ``n_samples_overall`` and with a ``dataloader``).
        silent
            Accepted for scvi-tools compatibility (no progress bar is shown).
        dataloader
            Minibatch dicts to use instead of ``adata``/``indices`` (all genes, own batches).

        Returns
        -------
        DataFrame cells x genes, or an array of shape ``(n_cells, n_genes)``,
        ``(n_samples, n_cells, n_genes)`` or ``(n_samples_overall, n_genes)``.
        """
        import torch

        _check_weights(weights)
        self._check_dataloader(adata, dataloader, indices=indices, batch_size=batch_size,
                               gene_list=gene_list, transform_batch=transform_batch)
        genes, codes = self._genes_and_batches(dataloader, gene_list, transform_batch)
        if n_samples_overall is not None:
            if n_samples != 1:
                raise ValueError("get_normalized_expression: pass n_samples or n_samples_overall, not both.")
            if dataloader is None:
                n_cells = len(self._cells_and_genes(adata, indices)[0])
                n_samples = n_samples_overall // max(n_cells, 1) + 1  # scvi-tools' rule
        average = n_samples > 1 and return_mean and n_samples_overall is None

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
            return (out.mean(0) if average else out).float().cpu().numpy()

        parts = self._run(one, adata, indices, batch_size, dataloader)
        axis = 1 if (n_samples > 1 and not average) else 0
        values = np.concatenate(parts, axis=axis)
        if n_samples_overall is not None:
            values = values.reshape(-1, values.shape[-1])
            return values[np.random.choice(values.shape[0], n_samples_overall, replace=True)]
        if return_numpy or values.ndim == 3 or dataloader is not None:
            return values
        idx, obs_names, var_names = self._cells_and_genes(adata, indices)
        columns = var_names[genes] if gene_list is not None else var_names
        import pandas as pd  # here, not at the top: training imports no pandas

        return pd.DataFrame(values, index=obs_names if obs_names is not None else idx, columns=columns)

    def get_likelihood_parameters(
        self,
        adata=None,
        indices: Sequence[int] | None = None,
        n_samples: int = 1,
        give_mean: bool = False,
        batch_size: int | None = None,
        dataloader: Iterable | None = None,
    ) -> dict[str, np.ndarray]:
        """Parameters of the count distribution per cell and gene, as scvi-tools returns them.

        Returns
        -------
        dict with ``"mean"`` (``px_rate``), ``"dispersions"`` (``theta``; not for Poisson) and,
        for ZINB, ``"dropout"`` (the zero-inflation probabilities, ``sigmoid`` of the logits),
        each ``(n_cells, n_genes)`` (with a leading sample axis when ``n_samples > 1`` and not
        ``give_mean``).
        """
        import torch

        self._check_dataloader(adata, dataloader, indices=indices, batch_size=batch_size)

        def one(batch):
            inf = self.module.inference(**self.module._get_inference_input(batch), n_samples=n_samples)
            gen = self.module.generative(**self.module._get_generative_input(batch, inf))
            px = gen["px"]
            out = {"mean": px.mu}
            if getattr(px, "theta", None) is not None:  # Poisson has no dispersion
                out["dispersions"] = torch.broadcast_to(px.theta, px.mu.shape)
            if getattr(px, "zi_logits", None) is not None:
                out["dropout"] = px.zi_probs
            if n_samples > 1 and give_mean:
                out = {k: v.mean(0) for k, v in out.items()}
            return {k: v.float().cpu().numpy() for k, v in out.items()}

        parts = self._run(one, adata, indices, batch_size, dataloader)
        axis = 1 if (n_samples > 1 and not give_mean) else 0
        return {k: np.concatenate([p[k] for p in parts], axis=axis) for k in parts[0]}

    def posterior_predictive_sample(
        self,
        adata=None,
        indices: Sequence[int] | None = None,
        transform_batch=None,
        n_samples: int = 1,
        gene_list: Sequence[str] | None = None,
        batch_size: int | None = None,
        dataloader: Iterable | None = None,
        silent: bool = True,
    ):
        """Counts drawn from the posterior predictive distribution.

        Parameters
        ----------
        transform_batch
            Decode as this batch (a category of ``batch_key``); a list averages the draws over
            those batches, as scvi-tools. ``None`` uses each cell's own batch.
        silent
            Accepted for scvi-tools compatibility (no progress bar is shown).

        Returns
        -------
        ``scipy.sparse.csr_matrix`` of shape ``(n_cells, n_genes)`` for ``n_samples=1``,
        else a dense array ``(n_cells, n_genes, n_samples)`` (scvi-tools returns a sparse
        ``GCXS`` of these shapes).
        """
        import scipy.sparse as sp
        import torch

        self._check_dataloader(adata, dataloader, indices=indices, batch_size=batch_size, gene_list=gene_list,
                               transform_batch=transform_batch)
        genes, codes = self._genes_and_batches(dataloader, gene_list, transform_batch)

        def one(batch):
            draws = [self.module.sample(batch, n_samples=n_samples, generative_kwargs={"transform_batch": code})
                     for code in codes]
            counts = draws[0] if len(draws) == 1 else torch.stack(draws).mean(0)
            return counts[:, genes].cpu().numpy()

        parts = np.concatenate(self._run(one, adata, indices, batch_size, dataloader), axis=0)
        return sp.csr_matrix(parts) if n_samples == 1 else parts
