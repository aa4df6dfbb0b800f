"""The module contract: inference -> generative -> loss, and the ``LossOutput`` it returns.

A module is a plain ``torch.nn.Module`` that knows nothing of AnnData: it receives a minibatch
dict (keys in :class:`snakevi._constants.REGISTRY_KEYS`) and returns tensors.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn


def _per_cell_total(value: torch.Tensor | dict[str, torch.Tensor]) -> torch.Tensor:
    """Sum a per-cell tensor, or a dict of per-cell tensors, into one per-cell tensor."""
    if isinstance(value, dict):
        return sum(value.values())
    return value


@dataclass
class LossOutput:
    """What a module's ``loss`` returns.

    Parameters
    ----------
    loss
        Scalar to minimise (already averaged over the minibatch, KL weight applied).
    reconstruction_loss
        Per-cell negative log-likelihood, shape ``(n_cells,)``, or a dict of such tensors.
    kl_local
        Per-cell KL divergences, shape ``(n_cells,)``, or a dict of such tensors.
    kl_global
        Scalar KL of global parameters (0 for the VAE), or a dict of scalars.
    extra_metrics
        0-d tensors logged as ``{name}_{train,validation}`` by the training plan.
    n_obs_minibatch
        Cells in the minibatch; taken from ``reconstruction_loss`` when not given.
    classification_loss, true_labels, logits
        Semi-supervised modules only (e.g. SCANVAE): the cross-entropy of the labelled
        minibatch (0-d), its labels ``(n_labelled, 1)`` and the classifier logits
        ``(n_labelled, n_labels)``; ``None`` when the step had no labelled cells.

    The ``*_sum`` attributes are computed once here so the training plan can accumulate
    epoch metrics without knowing how the module split its terms.
    """

    loss: torch.Tensor
    reconstruction_loss: torch.Tensor | dict[str, torch.Tensor]
    kl_local: torch.Tensor | dict[str, torch.Tensor] | None = None
    kl_global: torch.Tensor | dict[str, torch.Tensor] | None = None
    extra_metrics: dict[str, torch.Tensor] = field(default_factory=dict)
    n_obs_minibatch: int | None = None
    classification_loss: torch.Tensor | None = None
    true_labels: torch.Tensor | None = None
    logits: torch.Tensor | None = None

    def __post_init__(self) -> None:
        rec = _per_cell_total(self.reconstruction_loss)
        zero = torch.zeros((), device=rec.device, dtype=rec.dtype)
        kl_local = zero if self.kl_local is None else _per_cell_total(self.kl_local)
        kl_global = zero if self.kl_global is None else _per_cell_total(self.kl_global)
        if self.n_obs_minibatch is None:
            self.n_obs_minibatch = int(rec.shape[0])
        self.reconstruction_loss_sum = rec.sum()
        self.kl_local_sum = kl_local.sum() if kl_local.dim() > 0 else kl_local
        self.kl_global_sum = kl_global.sum() if kl_global.dim() > 0 else kl_global


class BaseModuleClass(nn.Module):
    """Base for generative modules: ``inference`` -> ``generative`` -> ``loss``.

    Subclasses implement the five methods below. ``forward`` chains them so a training plan
    only ever calls ``module(batch, loss_kwargs=...)``.
    """

    def _get_inference_input(self, tensors: dict[str, torch.Tensor]) -> dict:
        raise NotImplementedError

    def _get_generative_input(self, tensors: dict[str, torch.Tensor], inference_outputs: dict) -> dict:
        raise NotImplementedError

    def inference(self, *args, **kwargs) -> dict:
        raise NotImplementedError

    def generative(self, *args, **kwargs) -> dict:
        raise NotImplementedError

    def loss(self, tensors: dict[str, torch.Tensor], inference_outputs: dict, generative_outputs: dict, **kwargs) -> LossOutput:
        raise NotImplementedError

    @property
    def device(self) -> torch.device:
        """Device of the module's first parameter (CPU for a module without parameters)."""
        for p in self.parameters():
            return p.device
        return torch.device("cpu")

    def forward(
        self,
        tensors: dict[str, torch.Tensor],
        *,
        compute_loss: bool = True,
        inference_kwargs: dict | None = None,
        generative_kwargs: dict | None = None,
        loss_kwargs: dict | None = None,
    ):
        """Run inference and generative passes and, by default, the loss.

        Returns
        -------
        ``(inference_outputs, generative_outputs)`` or, with ``compute_loss=True``,
        ``(inference_outputs, generative_outputs, LossOutput)``.
        """
        inference_outputs = self.inference(**self._get_inference_input(tensors), **(inference_kwargs or {}))
        generative_outputs = self.generative(
            **self._get_generative_input(tensors, inference_outputs), **(generative_kwargs or {})
        )
        if not compute_loss:
            return inference_outputs, generative_outputs
        losses = self.loss(tensors, inference_outputs, generative_outputs, **(loss_kwargs or {}))
        return inference_outputs, generative_outputs, losses
