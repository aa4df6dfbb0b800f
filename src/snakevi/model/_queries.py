"""The plumbing of the posterior queries: minibatches with gradients off, gene and batch lookups.

Every query walks the data in minibatches with gradients off and the module in eval mode, so
calling it never changes the model. ``adata=None`` means the data the model was built on;
new data is checked against the model's registry first (same genes, known categories). As in
scvi-tools, a query may instead be given ``dataloader``: any iterable of minibatch dicts
(e.g. an :class:`~snakevi.data.AnnDataLoader`), used as it is.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Iterable, Iterator, Sequence

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import torch


class QueryPlumbing:
    """Shared helpers of the query mixins (no public methods)."""

    def _minibatches(self, adata, indices, batch_size: int | None, dataloader=None) -> Iterator[dict[str, torch.Tensor]]:
        from snakevi.data import AnnDataLoader

        if dataloader is None:
            data = self._resolve_data(adata)
            dataloader = AnnDataLoader(data, indices=indices, batch_size=batch_size or 128, shuffle=False)
        device = self.device
        for batch in dataloader:
            yield {k: v.to(device, non_blocking=True) for k, v in batch.items()}

    @staticmethod
    def _check_dataloader(adata, dataloader: Iterable | None, **ignored) -> None:
        """scvi-tools' ``_validate_adata_dataloader_input`` and its warning about ignored arguments."""
        if dataloader is None:
            return
        if adata is not None:
            raise ValueError("Pass adata or dataloader, not both: the dataloader already says which cells to use.")
        given = [name for name, value in ignored.items() if value is not None]
        if given:
            warnings.warn(
                f"{', '.join(given)} {'is' if len(given) == 1 else 'are'} ignored with a dataloader; build the "
                "dataloader with the cells and batch size you want.",
                UserWarning,
                stacklevel=3,
            )

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

    def _genes_and_batches(self, dataloader, gene_list, transform_batch):
        """Gene mask and batch codes; a dataloader's minibatches are used as they come (scvi-tools)."""
        if dataloader is not None:
            return slice(None), [None]
        return self._gene_mask(gene_list), self._batch_codes(transform_batch)

    def _run(self, fn, adata=None, indices=None, batch_size=None, dataloader=None) -> list:
        import torch

        was_training = self.module.training
        self.module.eval()
        try:
            with torch.inference_mode():
                return [fn(batch) for batch in self._minibatches(adata, indices, batch_size, dataloader)]
        finally:
            self.module.train(was_training)
