"""What each rank runs in the DDP tests (importable by name: ranks are fresh interpreters).

``fit_on_cells`` trains a small module with a BatchNorm layer on simulated counts through
snakevi's own loaders and trainer, with one process or as one rank of several, and returns
what the tests compare: the history, the weights, and every rank's view of the run.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from snakevi.data import AnnDataLoader, CellData, setup_anndata, simulate
from snakevi.module.base import BaseModuleClass, LossOutput
from snakevi.train import Callback, EarlyStopping, ModelCheckpoint, Trainer, TrainingPlan

N_CELLS, N_GENES = 96, 12


class BatchNormToy(BaseModuleClass):
    """Encoder Linear -> BatchNorm -> ReLU, linear decoder, per-cell squared error and a KL term.

    ``noise=True`` samples the latent (the RNG of each rank matters, as in the VAE); otherwise
    the step is deterministic, so a 2-rank run can be compared with one process number for number.
    """

    def __init__(self, noise: bool = False, dropout: float = 0.0):
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(N_GENES, 16), nn.BatchNorm1d(16, momentum=0.01, eps=0.001), nn.ReLU(),
                                     nn.Dropout(dropout), nn.Linear(16, 4))
        self.decoder = nn.Linear(2, N_GENES)
        self.noise = noise

    def _get_inference_input(self, tensors):
        return {"x": tensors["X"]}

    def _get_generative_input(self, tensors, inference_outputs):
        return {"z": inference_outputs["z"]}

    def inference(self, x):
        mean, logvar = self.encoder(torch.log1p(x)).chunk(2, dim=-1)
        z = mean + torch.randn_like(mean) * (0.5 * logvar).exp() if self.noise else mean
        return {"z": z, "mean": mean, "logvar": logvar}

    def generative(self, z):
        return {"x_hat": self.decoder(z)}

    def loss(self, tensors, inference_outputs, generative_outputs, kl_weight: float = 1.0):
        x = torch.log1p(tensors["X"])
        rec = ((generative_outputs["x_hat"] - x) ** 2).sum(-1)
        mean, logvar = inference_outputs["mean"], inference_outputs["logvar"]
        kl = 0.5 * (mean**2 + logvar.exp() - 1 - logvar).sum(-1)
        return LossOutput(loss=(rec + kl_weight * kl).mean(), reconstruction_loss=rec, kl_local=kl)


def cells(n_cells: int = N_CELLS) -> CellData:
    adata = simulate(n_cells, N_GENES, seed=3)
    setup_anndata(adata)
    return CellData.from_anndata(adata)


class RaiseAt(Callback):
    """Raise on rank ``rank`` when epoch ``epoch`` starts (a rank that fails mid-run)."""

    def __init__(self, rank: int, epoch: int):
        self.rank, self.epoch = rank, epoch

    def on_train_epoch_start(self, trainer, plan):
        if trainer.dist.rank == self.rank and trainer.current_epoch == self.epoch:
            raise RuntimeError(f"rank {self.rank} failed at epoch {self.epoch}")


def fit_on_cells(batch_size: int, max_epochs: int, *, devices="auto", noise: bool = False, dropout: float = 0.0,
                 n_train: int = 80, early_stopping: dict | None = None, checkpoint_dir: str | None = None,
                 ckpt_path: str | None = None, raise_at: tuple[int, int] | None = None, lr: float = 1e-2,
                 seed: int = 0, plan_kwargs: dict | None = None, callbacks: list | None = None) -> dict:
    """Train ``BatchNormToy``; return history, weights, and every rank's history and stop epoch."""
    data = cells()
    torch.manual_seed(seed)
    module = BatchNormToy(noise=noise, dropout=dropout)
    plan = TrainingPlan(module, lr=lr, **(plan_kwargs or {}))
    train = AnnDataLoader(data, np.arange(n_train), batch_size=batch_size, shuffle=True, seed=seed)
    val = AnnDataLoader(data, np.arange(n_train, len(data)), batch_size=batch_size)
    callbacks = list(callbacks or [])
    if early_stopping:
        callbacks.append(EarlyStopping(**early_stopping))
    if checkpoint_dir:
        callbacks.append(ModelCheckpoint(checkpoint_dir, monitor="elbo_validation"))
    if raise_at:
        callbacks.append(RaiseAt(*raise_at))
    trainer = Trainer(max_epochs=max_epochs, accelerator="cpu", devices=devices, enable_progress_bar=False,
                      check_val_every_n_epoch=1, callbacks=callbacks, seed=seed)
    trainer.fit(plan, train, val, ckpt_path=ckpt_path)
    views = trainer.dist.all_gather_object(
        {"history": trainer.history, "epochs": trainer.current_epoch, "global_step": trainer.global_step,
         "weights": {k: v.clone() for k, v in module.state_dict().items()}})
    return {"history": trainer.history, "weights": {k: v.clone() for k, v in module.state_dict().items()},
            "ranks": views, "world_size": trainer.dist.world_size}


def fit_kwargs(kwargs: dict) -> dict:
    """``fit_on_cells(**kwargs)``: spawn passes positional arguments only."""
    return fit_on_cells(**kwargs)
