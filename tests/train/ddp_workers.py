"""What each rank runs in the DDP tests (importable by name: ranks are fresh interpreters).

``fit_on_cells`` trains a small module with a BatchNorm layer on simulated counts through
snakevi's own loaders and trainer, with one process or as one rank of several, and returns
what the tests compare: the history, the weights, and every rank's view of the run. With
``plan="adversarial"`` it trains the adversarial plan (a batch classifier with BatchNorm and
its own optimizer), with ``plan="semi"`` the semi-supervised plan on ``(full, labelled)`` pairs
with a label classifier: both deterministic, so 2 ranks can match one process number for number.
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import torch
from torch import nn

from snakevi.data import AnnDataLoader, CellData, SemiSupervisedDataLoader, setup_anndata, simulate
from snakevi.module import Classifier
from snakevi.module.base import BaseModuleClass, LossOutput
from snakevi.train import (
    AdversarialTrainingPlan,
    Callback,
    EarlyStopping,
    ModelCheckpoint,
    SemiSupervisedTrainingPlan,
    SubSampleLabels,
    Trainer,
    TrainingPlan,
)

N_CELLS, N_GENES, N_GROUPS = 96, 12, 3


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
        self.n_latent, self.n_batch = 2, 2  # what the adversarial plan reads

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


class SemiToy(BatchNormToy):
    """``BatchNormToy`` plus a label classifier (with BatchNorm) on ``z``, trained on labelled minibatches."""

    def __init__(self):
        super().__init__()
        self.classifier = Classifier(2, n_hidden=8, n_labels=N_GROUPS, dropout_rate=0.0, logits=True)

    def loss(self, tensors, inference_outputs, generative_outputs, kl_weight: float = 1.0, labelled_tensors=None,
             classification_ratio=None):
        out = super().loss(tensors, inference_outputs, generative_outputs, kl_weight)
        if labelled_tensors is None:
            return out
        y = labelled_tensors["labels"]
        logits = self.classifier(self.inference(labelled_tensors["X"])["z"])
        ce = nn.functional.cross_entropy(logits, y.reshape(-1).long())
        return LossOutput(loss=out.loss + classification_ratio * ce, reconstruction_loss=out.reconstruction_loss,
                          kl_local=out.kl_local, classification_loss=ce, true_labels=y, logits=logits)


def cells(n_cells: int = N_CELLS) -> CellData:
    """Simulated counts in 2 batches; every 4th cell's label is hidden ('unknown')."""
    adata = simulate(n_cells, N_GENES, n_batches=2, n_groups=N_GROUPS, seed=3)
    labels = adata.obs["label"].astype(str).to_numpy(dtype=object)
    labels[::4] = "unknown"
    adata.obs["cell_type"] = pd.Categorical(labels)
    setup_anndata(adata, batch_key="batch", labels_key="cell_type", unlabeled_category="unknown")
    return CellData.from_anndata(adata)


def make_plan_and_loaders(kind: str, data: CellData, n_train: int, batch_size: int, seed: int, lr: float,
                          noise: bool, dropout: float, n_samples_per_label: int | None, plan_kwargs: dict):
    """``(plan, train_loader, val_loader, callbacks)`` of one kind: "plain", "adversarial" or "semi"."""
    train_idx, val_idx = np.arange(n_train), np.arange(n_train, len(data))
    if kind == "semi":
        module = SemiToy()
        plan = SemiSupervisedTrainingPlan(module, N_GROUPS, lr=lr, classification_ratio=5.0)
        loaders = [SemiSupervisedDataLoader(data, idx, n_samples_per_label=n_samples_per_label, batch_size=batch_size,
                                            shuffle=shuffle, seed=seed)
                   for idx, shuffle in ((train_idx, True), (val_idx, False))]
        return plan, *loaders, [SubSampleLabels()]
    module = BatchNormToy(noise=noise, dropout=dropout)
    if kind == "adversarial":
        adversary = Classifier(2, n_hidden=8, n_labels=2, n_layers=2, dropout_rate=0.0, logits=True)
        plan = AdversarialTrainingPlan(module, adversarial_classifier=adversary, lr=lr, n_epochs_kl_warmup=4)
    else:
        plan = TrainingPlan(module, lr=lr, **plan_kwargs)
    train = AnnDataLoader(data, train_idx, batch_size=batch_size, shuffle=True, seed=seed)
    return plan, train, AnnDataLoader(data, val_idx, batch_size=batch_size), []


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
                 seed: int = 0, plan: str = "plain", n_samples_per_label: int | None = None,
                 n_cells: int = N_CELLS, plan_kwargs: dict | None = None, callbacks: list | None = None,
                 logger=None) -> dict:
    """Train a toy module with plan ``plan``; return history, weights (the plan's auxiliary modules'
    too, prefixed ``aux{i}.``), and every rank's history, stop epoch and weights."""
    data = cells(n_cells)
    # Each rank builds other initial weights (rank 0 a single process's): the run must start
    # every rank from rank 0's, module and auxiliary modules alike.
    torch.manual_seed(seed + int(os.environ.get("RANK", "0")))
    plan, train, val, own = make_plan_and_loaders(plan, data, n_train, batch_size, seed, lr, noise, dropout,
                                                  n_samples_per_label, plan_kwargs or {})
    callbacks = own + list(callbacks or [])
    module = plan.module
    if early_stopping:
        callbacks.append(EarlyStopping(**early_stopping))
    if checkpoint_dir:
        callbacks.append(ModelCheckpoint(checkpoint_dir, monitor="elbo_validation"))
    if raise_at:
        callbacks.append(RaiseAt(*raise_at))
    trainer = Trainer(max_epochs=max_epochs, accelerator="cpu", devices=devices, enable_progress_bar=False,
                      check_val_every_n_epoch=1, callbacks=callbacks, seed=seed, logger=logger, log_every_n_steps=1)
    trainer.tracking = {"run_name": "ddp", "run_key": "ddp-key"}
    trainer.fit(plan, train, val, ckpt_path=ckpt_path)
    weights = {k: v.clone() for k, v in module.state_dict().items()}
    for i, aux in enumerate(getattr(plan, "auxiliary_modules", ())):
        weights.update({f"aux{i}.{k}": v.clone() for k, v in aux.state_dict().items()})
    views = trainer.dist.all_gather_object(
        {"history": trainer.history, "epochs": trainer.current_epoch, "global_step": trainer.global_step,
         "weights": weights})
    return {"history": trainer.history, "weights": weights, "ranks": views, "world_size": trainer.dist.world_size}


def fit_kwargs(kwargs: dict) -> dict:
    """``fit_on_cells(**kwargs)``: spawn passes positional arguments only."""
    return fit_on_cells(**kwargs)
