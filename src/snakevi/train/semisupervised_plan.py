"""``SemiSupervisedTrainingPlan``: the training plan of SCANVI (scvi-tools' plan of the same name).

A minibatch is either a ``(full, labelled)`` pair (from
:class:`~snakevi.data.SemiSupervisedDataLoader`) or a single dict (no labelled cells). The
labelled part goes to ``module.loss`` as ``labelled_tensors``, with ``classification_ratio``.
Besides the ELBO metrics it logs ``{train,validation}_classification_loss``, ``_accuracy``,
``_f1_score`` and ``_calibration_error`` (see :mod:`snakevi.train.classification_metrics`).

Under DDP the loader gives each rank its share of both halves of a pair
(:meth:`~snakevi.data.SemiSupervisedDataLoader.shard`), and the classification metrics are
computed from statistics summed over the ranks, so the history is one process's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from snakevi.module.base import BaseModuleClass, LossOutput
from snakevi.train.classification_metrics import ClassificationEpochMetrics
from snakevi.train.plan import TrainingPlan


def split_semisupervised_batch(batch) -> tuple[dict, dict | None]:
    """``(full, labelled)`` from a ``(full, labelled)`` pair, or ``(batch, None)`` for a plain dict."""
    if isinstance(batch, Mapping):
        return batch, None
    if isinstance(batch, Sequence) and len(batch) == 2 and all(isinstance(b, Mapping) for b in batch):
        return batch[0], batch[1]
    raise TypeError(
        f"SemiSupervisedTrainingPlan got a minibatch of type {type(batch).__name__}; expected a dict or a "
        "(full, labelled) pair of dicts, as SemiSupervisedDataLoader yields."
    )


class SemiSupervisedTrainingPlan(TrainingPlan):
    """Training plan for semi-supervised modules (SCANVAE): ELBO plus weighted classification loss.

    Parameters
    ----------
    module
        A module whose ``loss`` accepts ``labelled_tensors`` and ``classification_ratio``
        (e.g. :class:`~snakevi.module.SCANVAE`).
    n_classes
        Number of known classes (the unlabelled category excluded).
    classification_ratio
        Weight of the classification loss, passed to ``module.loss`` (scvi-tools' default 50).
    **kwargs
        :class:`~snakevi.train.TrainingPlan` arguments (``lr``, ``weight_decay``,
        ``n_epochs_kl_warmup``, ``reduce_lr_on_plateau``, ...) and further loss keywords.
    """

    def __init__(self, module: BaseModuleClass, n_classes: int, *, classification_ratio: float = 50, **kwargs) -> None:
        if "labelled_tensors" in kwargs:
            raise ValueError("'labelled_tensors' is set per minibatch by the plan; do not pass it as a loss keyword.")
        super().__init__(module, classification_ratio=classification_ratio, **kwargs)
        self.n_classes = int(n_classes)
        self.classification_ratio = classification_ratio
        self.train_classification_metrics = ClassificationEpochMetrics("train", self.n_classes)
        self.validation_classification_metrics = ClassificationEpochMetrics("validation", self.n_classes)

    def _semisupervised_forward(self, batch, kl_weight: float) -> LossOutput:
        full, labelled = split_semisupervised_batch(batch)
        kwargs = self._loss_kwargs(kl_weight)
        kwargs["labelled_tensors"] = labelled
        loss_output = self.module(full, loss_kwargs=kwargs)[-1]
        if not isinstance(loss_output, LossOutput):
            raise TypeError(
                f"{type(self.module).__name__}.forward returned {type(loss_output).__name__} last; "
                "expected a LossOutput (see snakevi.module.base)."
            )
        return loss_output

    def training_step(self, batch, batch_idx: int, *, epoch: int, global_step: int) -> torch.Tensor:
        """Forward one ``(full, labelled)`` pair (or plain dict), accumulate metrics, return the loss."""
        kl_weight = self.kl_weight(epoch, global_step)
        self._last_kl_weight = kl_weight
        loss_output = self._semisupervised_forward(batch, kl_weight)
        self.train_metrics.update(loss_output)
        self.train_classification_metrics.update(loss_output)
        return loss_output.loss

    def validation_step(self, batch, batch_idx: int, *, epoch: int, global_step: int) -> None:
        """Forward one validation pair with the last training KL weight; accumulate metrics."""
        kl_weight = self._last_kl_weight
        if kl_weight is None:
            kl_weight = self.kl_weight(epoch, global_step)
        loss_output = self._semisupervised_forward(batch, kl_weight)
        self.validation_metrics.update(loss_output)
        self.validation_classification_metrics.update(loss_output)

    def reset_metrics(self) -> None:
        """Drop partial sums (the trainer calls this when a fit starts)."""
        super().reset_metrics()
        self.train_classification_metrics.reset()
        self.validation_classification_metrics.reset()

    def set_metrics_reduction(self, reduce) -> None:
        """Sum the ELBO metrics and the classification metrics' statistics over the ranks (None: alone)."""
        super().set_metrics_reduction(reduce)
        self.train_classification_metrics.reduce = self.validation_classification_metrics.reduce = reduce

    def train_epoch_metrics(self) -> dict[str, float]:
        """ELBO metrics and ``kl_weight`` (see TrainingPlan) plus ``train_{classification_loss,...}``."""
        return {**super().train_epoch_metrics(), **self.train_classification_metrics.compute()}

    def validation_epoch_metrics(self) -> dict[str, float]:
        """ELBO metrics plus ``validation_{classification_loss,accuracy,f1_score,calibration_error}``."""
        return {**super().validation_epoch_metrics(), **self.validation_classification_metrics.compute()}
