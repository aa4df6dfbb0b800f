"""Graph connectivity: one piece per label scores 1; a label split in islands scores its largest share."""

import numpy as np
import pytest
from metric_data import mixed_batches, separated_batches

from snakevi.metrics import graph_connectivity


def test_extremes():
    X, _, labels = mixed_batches()
    # a random blob: at most an odd outlier that no other cell lists among its 14 nearest
    assert graph_connectivity(X, labels) > 0.97
    X, _, labels = separated_batches(n_batches=2)  # each label two equal far islands
    assert graph_connectivity(X, labels) == pytest.approx(0.5)


def test_hand_example_with_unequal_islands():
    # label "a": 6 cells near 0 and 4 near 100 (k=3 never bridges them); label "b": 5 cells together
    X = np.concatenate([np.arange(6), 100 + np.arange(4), 50 + np.arange(5)])[:, None].astype(float)
    labels = ["a"] * 10 + ["b"] * 5
    assert graph_connectivity(X, labels, k=3) == pytest.approx((0.6 + 1.0) / 2)


def test_uses_strong_components_of_the_directed_graph():
    # k=2 (self + nearest): in each label 0 <-> 1 and 2 -> 1, but nothing points back to 2, so the
    # strong components are {0, 1} and {2}: 2/3 (weakly the label would be one piece, 1.0)
    X = np.array([[0.0], [1.0], [2.5], [10.0], [11.0], [12.5]])
    labels = ["a", "a", "a", "b", "b", "b"]
    assert graph_connectivity(X, labels, k=2) == pytest.approx(2 / 3)
