"""Tiny simulated data, SCANVAE/VAE modules and loaders for the semi-supervised and adversarial plan tests."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from snakevi.data import CellData, DataSplitter, SemiSupervisedDataSplitter, setup_anndata, simulate
from snakevi.module import SCANVAE, VAE

N_CELLS, N_GENES, N_GROUPS = 200, 30, 3


def sim_data(n_batches: int = 2, hide_every: int = 3, seed: int = 0) -> CellData:
    """Simulated counts; every ``hide_every``-th cell's label is 'unknown' (0: all labelled)."""
    adata = simulate(n_cells=N_CELLS, n_genes=N_GENES, n_batches=n_batches, n_groups=N_GROUPS, seed=seed)
    labels = adata.obs["label"].astype(str).to_numpy(dtype=object)
    if hide_every:
        labels[::hide_every] = "unknown"
    adata.obs["cell_type"] = pd.Categorical(labels)
    setup_anndata(adata, batch_key="batch", labels_key="cell_type", unlabeled_category="unknown")
    return CellData.from_anndata(adata)


def semi_loaders(data: CellData, batch_size: int = 50, **kwargs):
    splitter = SemiSupervisedDataSplitter(data, train_size=0.8, batch_size=batch_size, seed=0, **kwargs)
    return splitter.train_dataloader(), splitter.val_dataloader()


def plain_loaders(data: CellData, batch_size: int = 50):
    splitter = DataSplitter(data, train_size=0.8, batch_size=batch_size, seed=0)
    return splitter.train_dataloader(), splitter.val_dataloader()


def make_scanvae(data: CellData, seed: int = 0) -> SCANVAE:
    torch.manual_seed(seed)
    s = data.registry["summary"]
    return SCANVAE(n_input=s["n_vars"], n_batch=s["n_batch"], n_labels=s["n_labels"] - 1, n_hidden=16, n_latent=4)


def make_vae(data: CellData, seed: int = 0) -> VAE:
    torch.manual_seed(seed)
    s = data.registry["summary"]
    return VAE(n_input=s["n_vars"], n_batch=s["n_batch"], n_hidden=16, n_latent=4)


def states_equal(a: dict, b: dict) -> bool:
    """Nested dicts/lists of tensors and plain values, compared exactly."""
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(states_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(states_equal(x, y) for x, y in zip(a, b))
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and torch.equal(a, b)
    return a == b or (isinstance(a, float) and np.isnan(a) and np.isnan(b))
