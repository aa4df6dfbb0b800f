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

Under DDP each rank holds a shard of every minibatch, and none of these metrics is a sum over
cells. So each rank keeps, per minibatch, the sufficient statistics of its shard (cells, labelled
cells, summed cross-entropy, correct predictions, the F1 counts and the calibration bins); at
the epoch's end they are summed over the ranks minibatch by minibatch, and each minibatch's
metrics are computed from the sums: the values one process gets on the whole minibatches.
"""

from __future__ import annotations

import torch

from snakevi.module.base import LossOutput

METRIC_NAMES = ("classification_loss", "accuracy", "f1_score", "calibration_error")
#: torchmetrics' default number of calibration bins (a confidence of 1 gets one more).
N_BINS = 15


def normalize_logits_if_needed(scores: torch.Tensor) -> torch.Tensor:
    """Softmax over classes unless every score already lies in [0, 1] (torchmetrics' rule, device-side)."""
    outside = ((scores < 0) | (scores > 1)).any()
    return torch.where(outside, torch.softmax(scores, dim=1), scores)


def multiclass_accuracy(predicted: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Micro-averaged accuracy: share of ``predicted == target`` (0-d float tensor)."""
    return (predicted == target).float().mean()


def multiclass_f1_micro(predicted: torch.Tensor, target: torch.Tensor, n_classes: int) -> torch.Tensor:
    """Micro-averaged F1 from per-class counts: ``2 tp / (2 tp + fp + fn)`` (0-d float tensor)."""
    return f1_from_counts(f1_counts(predicted, target, n_classes))


def f1_counts(predicted: torch.Tensor, target: torch.Tensor, n_classes: int) -> torch.Tensor:
    """``(3,)``: true positives, false positives and false negatives summed over the classes."""
    classes = torch.arange(n_classes, device=predicted.device)
    pred_hot = predicted.unsqueeze(-1) == classes
    true_hot = target.unsqueeze(-1) == classes
    return torch.stack([(pred_hot & true_hot).sum(), (pred_hot & ~true_hot).sum(), (~pred_hot & true_hot).sum()])


def f1_from_counts(counts: torch.Tensor) -> torch.Tensor:
    """Micro F1 ``2 tp / (2 tp + fp + fn)`` from ``(..., 3)`` counts (:func:`f1_counts`); 0 without any."""
    tp, fp, fn = counts.unbind(-1)
    denominator = (2 * tp + fp + fn).float()
    # torchmetrics returns 0 when there is nothing to score.
    return torch.where(denominator > 0, 2 * tp.float() / denominator.clamp_min(1), torch.zeros_like(denominator))


def multiclass_calibration_error(scores: torch.Tensor, target: torch.Tensor, n_bins: int = N_BINS) -> torch.Tensor:
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
    return calibration_from_bins(calibration_bins(scores, target, n_bins))


def calibration_bins(scores: torch.Tensor, target: torch.Tensor, n_bins: int = N_BINS) -> torch.Tensor:
    """``(3, n_bins + 1)``: per confidence bin, the cells, their summed confidence and their correct ones."""
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
    return torch.stack([count, conf_bin, acc_bin])


def calibration_from_bins(bins: torch.Tensor) -> torch.Tensor:
    """Expected calibration error from ``(..., 3, n_bins + 1)`` bins (:func:`calibration_bins`)."""
    count, conf_bin, acc_bin = bins.unbind(-2)
    conf_bin = torch.nan_to_num(conf_bin / count)
    acc_bin = torch.nan_to_num(acc_bin / count)
    return torch.sum(torch.abs(acc_bin - conf_bin) * (count / count.sum(-1, keepdim=True)), dim=-1)


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


def minibatch_statistics(loss_output: LossOutput, n_classes: int) -> torch.Tensor:
    """One minibatch's sufficient statistics for the classification metrics, a flat float64 row.

    ``[cells, labelled cells, summed cross-entropy, correct, tp, fp, fn, calibration bins...]``;
    a minibatch without labelled cells has zeros after its cell count. Rows of the shards of one
    minibatch add up to the row of the whole minibatch.
    """
    n_full = float(loss_output.n_obs_minibatch)
    dtype, device = torch.float64, loss_output.loss.device
    if loss_output.classification_loss is None:
        row = torch.zeros(_WIDTH, dtype=dtype, device=device)
        row[0] = n_full
        return row
    with torch.no_grad():
        target = loss_output.true_labels.reshape(-1)
        logits = loss_output.logits.detach()
        predicted = torch.argmax(logits, dim=-1)
        n_lab = torch.tensor(float(target.numel()), dtype=dtype, device=device)
        head = torch.stack([torch.tensor(n_full, dtype=dtype, device=device), n_lab,
                            loss_output.classification_loss.detach().to(dtype) * n_lab,
                            (predicted == target).sum().to(dtype)])
        counts = f1_counts(predicted, target, n_classes).to(dtype)
        return torch.cat([head, counts, calibration_bins(logits, target).to(dtype).reshape(-1)])


#: Columns of :func:`minibatch_statistics` before the calibration bins, and in all.
_N_FIXED = 7
_WIDTH = _N_FIXED + 3 * (N_BINS + 1)


def metrics_from_statistics(rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(weights, values)``: per row of summed statistics its cells and its :data:`METRIC_NAMES` values.

    Rows without labelled cells get weight 0 (not counted, as in one process).
    """
    n_full, n_lab, ce_sum, correct = rows[:, :4].unbind(-1)
    labelled = n_lab > 0
    safe = n_lab.clamp_min(1)
    bins = rows[:, _N_FIXED:].reshape(rows.shape[0], 3, N_BINS + 1)
    values = torch.stack([ce_sum / safe, correct / safe, f1_from_counts(rows[:, 4:_N_FIXED]).to(rows.dtype),
                          torch.where(labelled, calibration_from_bins(bins), torch.zeros_like(n_lab))], dim=-1)
    return torch.where(labelled, n_full, torch.zeros_like(n_full)), values


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
        #: Sums a tensor over the ranks of a multi-process run (set by the plan); None alone.
        self.reduce = None
        self.reset()

    def reset(self) -> None:
        """Forget everything accumulated so far."""
        self._sums: torch.Tensor | None = None
        self._weight = 0
        self._rows: list[torch.Tensor] = []  # per-minibatch statistics, under DDP only

    def update(self, loss_output: LossOutput) -> None:
        """Add one minibatch; minibatches without labelled cells are not counted (as in scvi-tools)."""
        if self.reduce is not None:
            # Every minibatch, labelled or not: another rank's shard of it may hold labelled cells.
            self._rows.append(minibatch_statistics(loss_output, self.n_classes))
            return
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
        if self.reduce is not None:
            return self._compute_reduced()
        if self._sums is None:
            self.reset()
            return {}
        sums, weight = self._sums.tolist(), self._weight  # the one host sync
        self.reset()
        return {f"{self.mode}_{name}": value / weight for name, value in zip(METRIC_NAMES, sums)}

    def _compute_reduced(self) -> dict[str, float]:
        """The epoch means of all ranks' minibatches, each minibatch's statistics summed first."""
        rows = torch.stack(self._rows) if self._rows else torch.zeros(0, _WIDTH, dtype=torch.float64)
        self.reset()
        # Minibatch k of every rank is a shard of the same minibatch; validation ranks may have
        # one minibatch fewer, so every rank pads to the total count (extra rows stay zero).
        total = int(self.reduce(torch.tensor([float(rows.shape[0])], dtype=rows.dtype, device=rows.device)).item())
        rows = torch.cat([rows, rows.new_zeros(total - rows.shape[0], _WIDTH)])
        weights, values = metrics_from_statistics(self.reduce(rows))
        weight = weights.sum()
        if not weight > 0:
            return {}
        means = ((values * weights.unsqueeze(-1)).sum(0) / weight).tolist()  # the one host sync
        return {f"{self.mode}_{name}": value for name, value in zip(METRIC_NAMES, means)}
