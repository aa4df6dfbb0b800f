"""Isolated labels: which labels count as isolated, and their silhouette score."""

import numpy as np
import pytest
from test_silhouette import naive_silhouette

from snakevi.metrics import isolated_labels
from snakevi.metrics.isolated_labels import isolated_label_codes


def test_isolated_labels_are_those_in_the_fewest_batches():
    labels = np.array([0, 0, 0, 1, 1, 2, 2, 2])
    batch = np.array([0, 1, 2, 0, 0, 1, 2, 2])  # label 0: 3 batches, label 1: 1, label 2: 2
    np.testing.assert_array_equal(isolated_label_codes(labels, batch), [1])
    np.testing.assert_array_equal(isolated_label_codes(labels, batch, iso_threshold=2), [1, 2])


def test_score_is_the_rescaled_silhouette_of_the_isolated_labels_cells():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 3))
    labels = np.repeat(["T", "B", "NK", "DC"], 10)
    batch = np.where(np.isin(labels, ["NK", "DC"]), "b0", rng.choice(["b0", "b1"], size=40))
    s = (naive_silhouette(X, labels) + 1) / 2
    want = np.mean([s[labels == "NK"].mean(), s[labels == "DC"].mean()])
    assert isolated_labels(X, labels, batch) == pytest.approx(want)


def test_extremes():
    rng = np.random.default_rng(1)
    labels = np.repeat([0, 1, 2], 30)
    batch = np.where(labels == 2, 0, np.tile([0, 1], 45))  # label 2 is isolated in batch 0
    X = rng.normal(size=(90, 3))
    X[labels == 2] += 50.0  # the isolated label is far from everything
    assert isolated_labels(X, labels, batch) > 0.95
    X = rng.normal(size=(90, 3))  # the isolated label is mixed among the others
    assert isolated_labels(X, labels, batch) < 0.55
