"""A tiny module, loader and recording callback for the train tests (no VAE, no AnnData)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from snakevi.module.base import BaseModuleClass, LossOutput
from snakevi.train import Callback, Trainer, TrainingPlan

N_GENES = 6
N_LATENT = 2


class ToyModule(BaseModuleClass):
    """Linear Gaussian VAE: per-cell squared-error reconstruction and a standard-normal KL.

    ``dropout`` makes the forward pass consume torch's RNG (for the resume test);
    ``nan_at_call`` makes the loss NaN on that (0-based) training call.
    """

    def __init__(self, n_genes: int = N_GENES, n_latent: int = N_LATENT, dropout: float = 0.0, nan_at_call=None):
        super().__init__()
        self.encoder = nn.Linear(n_genes, 2 * n_latent)
        self.decoder = nn.Linear(n_latent, n_genes)
        self.dropout = nn.Dropout(dropout)
        self.nan_at_call = nan_at_call
        self.calls = 0
        self.seen_kwargs: list[dict] = []

    def _get_inference_input(self, tensors):
        return {"x": tensors["X"]}

    def _get_generative_input(self, tensors, inference_outputs):
        return {"z": inference_outputs["z"]}

    def inference(self, x):
        mean, logvar = self.encoder(self.dropout(torch.log1p(x))).chunk(2, dim=-1)
        z = mean + torch.randn_like(mean) * (0.5 * logvar).exp()
        return {"z": z, "mean": mean, "logvar": logvar}

    def generative(self, z):
        return {"x_hat": self.decoder(z)}

    def loss(self, tensors, inference_outputs, generative_outputs, kl_weight: float = 1.0):
        self.seen_kwargs.append({"kl_weight": kl_weight})
        x = torch.log1p(tensors["X"])
        rec = ((generative_outputs["x_hat"] - x) ** 2).sum(-1)
        mean, logvar = inference_outputs["mean"], inference_outputs["logvar"]
        kl = 0.5 * (mean**2 + logvar.exp() - 1 - logvar).sum(-1)
        loss = (rec + kl_weight * kl).mean()
        if self.training:
            if self.calls == self.nan_at_call:
                loss = loss * float("nan")
            self.calls += 1
        return LossOutput(loss=loss, reconstruction_loss=rec, kl_local={"kl_divergence_z": kl})


class ToyLoader:
    """Minibatch dicts from a fixed count matrix; shuffling derived from (seed, epoch)."""

    def __init__(
        self, x: np.ndarray, batch_size: int = 8, shuffle: bool = False, seed: int = 0, as_numpy: bool = False
    ):
        self.x = x.astype(np.float32)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.as_numpy = as_numpy
        self.epoch = 0
        self.set_epoch_calls: list[int] = []

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.set_epoch_calls.append(epoch)

    def __len__(self) -> int:
        return -(-len(self.x) // self.batch_size)

    def __iter__(self):
        n = len(self.x)
        order = np.random.default_rng((self.seed, self.epoch)).permutation(n) if self.shuffle else np.arange(n)
        for start in range(0, n, self.batch_size):
            idx = order[start : start + self.batch_size]
            batch = {
                "X": self.x[idx],
                "batch": np.zeros((len(idx), 1), dtype=np.int64),
                "labels": np.zeros((len(idx), 1), dtype=np.int64),
            }
            yield batch if self.as_numpy else {k: torch.from_numpy(v) for k, v in batch.items()}


def toy_counts(n_cells: int = 24, n_genes: int = N_GENES, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).poisson(3.0, size=(n_cells, n_genes)).astype(np.float32)


def make_loaders(n_train: int = 24, n_val: int = 8, batch_size: int = 8, shuffle: bool = True):
    x = toy_counts(n_train + n_val)
    return ToyLoader(x[:n_train], batch_size, shuffle=shuffle), ToyLoader(x[n_train:], batch_size)


def quiet_trainer(**kwargs) -> Trainer:
    """A CPU trainer without progress bar (tests read stderr only when they mean to)."""
    kwargs.setdefault("accelerator", "cpu")
    kwargs.setdefault("enable_progress_bar", False)
    return Trainer(**kwargs)


def toy_plan(seed: int = 0, **plan_kwargs) -> TrainingPlan:
    torch.manual_seed(seed)
    module_kwargs = {k: plan_kwargs.pop(k) for k in ("dropout", "nan_at_call") if k in plan_kwargs}
    return TrainingPlan(ToyModule(**module_kwargs), **plan_kwargs)


class ScriptedMetric(Callback):
    """Logs ``values[epoch]`` under ``name`` at the start of each epoch."""

    def __init__(self, name: str, values):
        self.name = name
        self.values = list(values)

    def on_train_epoch_start(self, trainer, plan):
        trainer.log(self.name, self.values[trainer.current_epoch])
