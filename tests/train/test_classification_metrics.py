"""Classification metrics: torchmetrics' definitions on hand-made cases, and their epoch means."""

from __future__ import annotations

import math

import pytest
import torch

from snakevi.module.base import LossOutput
from snakevi.train.classification_metrics import (
    ClassificationEpochMetrics,
    minibatch_statistics,
    multiclass_accuracy,
    multiclass_calibration_error,
    multiclass_f1_micro,
    normalize_logits_if_needed,
)

# Top-1 confidences 0.55 (wrong), 0.58 (wrong), 0.65 (right), 0.9 (right).
PROBS = torch.tensor([[0.20, 0.25, 0.55], [0.58, 0.02, 0.40], [0.10, 0.25, 0.65], [0.90, 0.05, 0.05]])
TARGET = torch.tensor([0, 1, 2, 0])


def test_calibration_error_by_hand_with_15_bins():
    # 15 bins of width 1/15: 0.55 and 0.58 share bin 8 (mean conf 0.565, accuracy 0),
    # 0.65 is in bin 9 and 0.9 in bin 13 (accuracy 1 each).
    expected = 0.5 * 0.565 + 0.25 * (1 - 0.65) + 0.25 * (1 - 0.9)
    assert multiclass_calibration_error(PROBS, TARGET).item() == pytest.approx(expected, abs=1e-6)


def test_calibration_error_with_3_bins_is_torchmetrics_doc_example():
    preds = torch.tensor([[0.25, 0.20, 0.55], [0.55, 0.05, 0.40], [0.10, 0.30, 0.60], [0.90, 0.05, 0.05]])
    assert multiclass_calibration_error(preds, TARGET, n_bins=3).item() == pytest.approx(0.2, abs=1e-6)


def test_logits_are_softmaxed_but_scores_in_unit_interval_are_taken_as_probabilities():
    logits = torch.log(PROBS) + 3.0  # outside [0, 1]: softmax recovers PROBS
    assert torch.allclose(normalize_logits_if_needed(logits), PROBS, atol=1e-6)
    assert multiclass_calibration_error(logits, TARGET).item() == pytest.approx(
        multiclass_calibration_error(PROBS, TARGET).item(), abs=1e-6
    )
    assert torch.equal(normalize_logits_if_needed(PROBS), PROBS)


def test_full_confidence_gets_its_own_bin():
    probs = torch.tensor([[1.0, 0.0], [0.7, 0.3]])
    target = torch.tensor([0, 1])  # the certain one is right, the 0.7 one wrong
    assert multiclass_calibration_error(probs, target).item() == pytest.approx(0.5 * 0.7, abs=1e-6)


def test_accuracy_and_micro_f1():
    pred = torch.tensor([0, 2, 2, 1, 0])
    target = torch.tensor([0, 1, 2, 1, 2])
    assert multiclass_accuracy(pred, target).item() == pytest.approx(3 / 5)
    # tp = 3, fp = fn = 2: 2*3 / (6 + 4)
    assert multiclass_f1_micro(pred, target, n_classes=3).item() == pytest.approx(0.6)


def _output(n_full, logits, labels, ce):
    return LossOutput(
        loss=torch.tensor(1.0), reconstruction_loss=torch.zeros(n_full), classification_loss=torch.tensor(ce),
        logits=logits, true_labels=labels.unsqueeze(1),
    )


def test_epoch_means_are_weighted_by_full_minibatch_size_and_skip_unlabelled_steps():
    acc = ClassificationEpochMetrics("validation", n_classes=3)
    acc.update(_output(10, torch.log(PROBS), TARGET, 2.0))                      # accuracy 0.5
    acc.update(_output(30, torch.log(PROBS[2:]), TARGET[2:], 1.0))              # accuracy 1.0
    acc.update(LossOutput(loss=torch.tensor(1.0), reconstruction_loss=torch.zeros(50)))  # no labels: not counted
    out = acc.compute()
    assert set(out) == {"validation_classification_loss", "validation_accuracy", "validation_f1_score",
                        "validation_calibration_error"}
    assert out["validation_accuracy"] == pytest.approx((10 * 0.5 + 30 * 1.0) / 40)
    assert out["validation_f1_score"] == pytest.approx(out["validation_accuracy"])
    assert out["validation_classification_loss"] == pytest.approx((10 * 2.0 + 30 * 1.0) / 40)
    assert math.isfinite(out["validation_calibration_error"])
    assert acc.compute() == {}  # reset after compute
    with pytest.raises(ValueError, match="mode"):
        ClassificationEpochMetrics("test", 3)


def test_statistics_path_of_ddp_gives_the_epoch_means_of_one_process():
    # Under DDP the accumulator keeps per-minibatch statistics and sums them over the ranks with
    # `reduce`; with one rank (reduce = identity) it must give what the direct path gives.
    outputs = [_output(10, torch.log(PROBS), TARGET, 2.0), _output(30, torch.log(PROBS[2:]) * 3, TARGET[2:], 1.0),
               LossOutput(loss=torch.tensor(1.0), reconstruction_loss=torch.zeros(50))]
    direct, reduced = ClassificationEpochMetrics("train", 3), ClassificationEpochMetrics("train", 3)
    reduced.reduce = lambda t: t
    for out in outputs:
        direct.update(out)
        reduced.update(out)
    expected, got = direct.compute(), reduced.compute()
    assert got.keys() == expected.keys()
    for key in expected:
        assert got[key] == pytest.approx(expected[key], rel=1e-6), key
    # Statistics of two shards add up to those of the whole minibatch.
    halves = [minibatch_statistics(_output(5, torch.log(PROBS[i::2]), TARGET[i::2], 0.5), 3) for i in (0, 1)]
    whole = minibatch_statistics(_output(10, torch.log(PROBS), TARGET, 0.5), 3)
    torch.testing.assert_close(halves[0] + halves[1], whole)
    assert reduced.compute() == {}  # reset after compute, and nothing seen
