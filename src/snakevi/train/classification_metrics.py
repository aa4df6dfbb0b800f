"""Classification metrics of the semi-supervised plan, computed on the device without host syncs.

The per-minibatch values are torchmetrics' functional ones that scvi-tools logs:

- ``accuracy``: ``multiclass_accuracy(argmax(logits), y, average="micro")``, the share of
  correct predictions;
- ``f1_score``: ``multiclass_f1_score(..., average="micro")``: ``2 tp / (2 tp + fp + fn)`` summed
  over classes (for single-label data it equals the accuracy);
- ``calibration_error``: ``multiclass_calibration_error(logits, y)`` with the defaults
  ``n_bins=15``, ``norm="l1"`` (expected calibration error of the top-1 confidence);
- ``classification_loss``: the module's cross-entropy.

Epoch values are Lightning's: the mean over the minibatches that had labelled cells, weighted by
the size of each (full) minibatch, as scvi-tools logs them with ``batch_size=n_obs_minibatch``.
"""

from __future__ import annotations

import torch

from snakevi.module.base import LossOutput

METRIC_NAMES = ("classification_loss", "accuracy", "f1_score", "calibration_error")


def normalize_logits_if_needed(scores: torch.Tensor) -> torch.Tensor:
    """Softmax over classes unless every score already lies in [0, 1] (torchmetrics' rule, device-side)."""
    outside = ((scores < 0) | (scores > 1)).any()
    return torch.where(outside, torch.softmax(scores, dim=1), scores)


def multiclass_accuracy(predicted: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Micro-averaged accuracy: share of ``predicted == target`` (0-d float tensor)."""
    return (predicted == target).float().mean()


def multiclass_f1_micro(predicted: torch.Tensor, target: torch.Tensor, n_classes: int) -> torch.Tensor:
    """Micro-averaged F1 from per-class counts: ``2 tp / (2 tp + fp + fn)`` (0-d float tensor)."""
    classes = torch.arange(n_classes, device=predicted.device)
    pred_hot = predicted.unsqueeze(-1) == classes
    true_hot = target.unsqueeze(-1) == classes
    tp = (pred_hot & true_hot).sum()
    fp = (pred_hot & ~true_hot).sum()
    fn = (~pred_hot & true_hot).sum()
    denominator = (2 * tp + fp + fn).float()
    # torchmetrics returns 0 when there is nothing to score.
    return torch.where(denominator > 0, 2 * tp.float() / denominator.clamp_min(1), torch.zeros_like(denominator))


def multiclass_calibration_error(scores: torch.Tensor, target: torch.Tensor, n_bins: int = 15) -> torch.Tensor:
    """Top-label expected calibration error (L1), as torchmetrics' ``multiclass_calibration_error``.

    Parameters
    ----------
    scores
        ``(n, n_classes)`` logits or probabilities (see :func:`normalize_logits_if_needed`).
    target
        ``(n,)`` true classes.
    n_bins
        Equal-width confidence bins over [0, 1]; a confidence of exactly 1 gets a bin of its
        own, as in torchmetrics.

    Returns
    -------
    0-d tensor: ``sum_b |accuracy_b - confidence_b| * share_b``.
    """
    probs = normalize_logits_if_needed(scores)
    confidences, predictions = probs.max(dim=1)
    confidences = confidences.float()
    accuracies = predictions.eq(target).float()
    boundaries = torch.linspace(0, 1, n_bins + 1, dtype=confidences.dtype, device=confidences.device)
    index = torch.bucketize(confidences, boundaries, right=True) - 1
    count = torch.zeros(n_bins + 1, dtype=confidences.dtype, device=confidences.device)
    count.scatter_add_(0, index, torch.ones_like(confidences))
    conf_bin = torch.zeros_like(count).scatter_add_(0, index, confidences)
    acc_bin = torch.zeros_like(count).scatter_add_(0, index, accuracies)
    conf_bin = torch.nan_to_num(conf_bin / count)
    acc_bin = torch.nan_to_num(acc_bin / count)
    return torch.sum(torch.abs(acc_bin - conf_bin) * (count / count.sum()))


def classification_metrics(loss_output: LossOutput, n_classes: int) -> dict[str, torch.Tensor]:
    """The four 0-d metrics of one minibatch with labelled cells (see the module docstring)."""
    with torch.no_grad():
        target = loss_output.true_labels.reshape(-1)
        logits = loss_output.logits.detach()
        predicted = torch.argmax(logits, dim=-1)
        return {
            "classification_loss": loss_output.classification_loss.detach(),
            "accuracy": multiclass_accuracy(predicted, target),
            "f1_score": multiclass_f1_micro(predicted, target, n_classes),
            "calibration_error": multiclass_calibration_error(logits, target),
        }


class ClassificationEpochMetrics:
    """Running, batch-size-weighted sums of the classification metrics for one mode.

    ``update`` adds device tensors only; ``compute`` reads them back in one transfer.

    Parameters
    ----------
    mode
        ``"train"`` or ``"validation"``: the prefix of the metric names.
    n_classes
        Number of known classes (for the F1 counts).
    """

    def __init__(self, mode: str, n_classes: int) -> None:
        if mode not in ("train", "validation"):
            raise ValueError(f"mode={mode!r}: expected 'train' or 'validation'.")
        self.mode = mode
        self.n_classes = int(n_classes)
        self.reset()

    def reset(self) -> None:
        """Forget everything accumulated so far."""
        self._sums: torch.Tensor | None = None
        self._weight = 0

    def update(self, loss_output: LossOutput) -> None:
        """Add one minibatch; minibatches without labelled cells are not counted (as in scvi-tools)."""
        if loss_output.classification_loss is None:
            return
        values = classification_metrics(loss_output, self.n_classes)
        n = int(loss_output.n_obs_minibatch)
        dtype = torch.float32 if values["accuracy"].device.type == "mps" else torch.float64
        row = torch.stack([values[k].to(dtype) for k in METRIC_NAMES]) * n
        self._sums = row if self._sums is None else self._sums + row
        self._weight += n

    def compute(self) -> dict[str, float]:
        """``{mode}_{name}`` epoch means as floats, then reset; ``{}`` if no labelled minibatch was seen."""
        if self._sums is None:
            self.reset()
            return {}
        sums, weight = self._sums.tolist(), self._weight  # the one host sync
        self.reset()
        return {f"{self.mode}_{name}": value / weight for name, value in zip(METRIC_NAMES, sums)}
