"""Silhouette label, BRAS and classic silhouette batch against direct formulas and extremes."""

import numpy as np
import pytest
from metric_data import mixed_batches, mixed_labels, separated_batches
from scipy.spatial.distance import cdist

from snakevi.metrics import UndefinedMetricWarning, bras, silhouette_batch, silhouette_label, silhouette_samples
from snakevi.metrics import _knn


def naive_silhouette(X, labels, metric="euclidean", between="nearest"):
    D = cdist(X, X, metric="cosine" if metric == "cosine" else "euclidean")
    out = np.zeros(len(X))
    for i in range(len(X)):
        own = labels == labels[i]
        if own.sum() == 1:
            continue
        a = D[i, own].sum() / (own.sum() - 1)
        others = [D[i, labels == c].mean() for c in np.unique(labels) if c != labels[i]]
        b = {"nearest": min, "furthest": max}[between](others) if between != "mean_other" else D[i, ~own].mean()
        out[i] = (b - a) / max(a, b)
    return out


def test_hand_computed_one_dimensional_example():
    # a = {0, 1}, b = {10, 11}: for x=0, a = 1, b = (10 + 11) / 2, s = (10.5 - 1) / 10.5
    X = np.array([[0.0], [1.0], [10.0], [11.0]])
    s = silhouette_samples(X, ["a", "a", "b", "b"])
    np.testing.assert_allclose(s, [9.5 / 10.5, 8.5 / 9.5, 8.5 / 9.5, 9.5 / 10.5])
    assert silhouette_label(X, ["a", "a", "b", "b"]) == pytest.approx((s.mean() + 1) / 2)


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
@pytest.mark.parametrize("between", ["nearest", "mean_other", "furthest"])
def test_matches_the_direct_formula_in_small_blocks(monkeypatch, metric, between):
    rng = np.random.default_rng(3)
    X = rng.normal(size=(90, 4)) + 1.0
    labels = rng.integers(0, 4, size=90)
    labels[0] = 9  # a singleton cluster scores 0
    monkeypatch.setattr(_knn, "_BLOCK_ENTRIES", 700)
    got = silhouette_samples(X, labels, metric=metric, between_cluster_distances=between)
    np.testing.assert_allclose(got, naive_silhouette(X, labels, metric, between), atol=1e-10)
    assert got[0] == 0


def test_silhouette_label_extremes():
    X, _, labels = separated_batches()
    assert silhouette_label(X, labels) > 0.8
    X, _, labels = mixed_labels()
    assert silhouette_label(X, labels) == pytest.approx(0.5, abs=0.03)


@pytest.mark.parametrize("fn", [bras, silhouette_batch])
def test_batch_silhouettes_extremes(fn):
    X, batch, labels = mixed_batches()
    assert fn(X, labels, batch) > 0.9
    X, batch, labels = separated_batches()
    assert fn(X, labels, batch) < 0.35


def test_batch_silhouette_is_the_mean_over_labels_of_one_minus_abs_widths():
    rng = np.random.default_rng(4)
    X = rng.normal(size=(60, 3))
    labels, batch = np.repeat([0, 1], 30), rng.integers(0, 3, size=60)
    want = np.mean([np.mean(1 - np.abs(naive_silhouette(X[labels == l], batch[labels == l], "cosine", "mean_other")))
                    for l in (0, 1)])
    assert bras(X, labels, batch) == pytest.approx(want, abs=1e-10)
    want = np.mean([np.mean(1 - np.abs(naive_silhouette(X[labels == l], batch[labels == l]))) for l in (0, 1)])
    assert silhouette_batch(X, labels, batch) == pytest.approx(want, abs=1e-10)


def test_labels_with_one_batch_or_one_cell_per_batch_are_skipped():
    X = np.random.default_rng(5).normal(size=(8, 2))
    labels = np.array([0, 0, 0, 0, 1, 1, 2, 2])
    batch = np.array([0, 1, 0, 1, 0, 0, 0, 1])  # label 1: one batch; label 2: one cell per batch
    want = np.mean(1 - np.abs(naive_silhouette(X[:4], batch[:4])))
    assert silhouette_batch(X, labels, batch) == pytest.approx(want)
    with pytest.warns(UndefinedMetricWarning, match="BRAS is not defined"):
        assert np.isnan(bras(X, labels, np.zeros(8)))


def test_single_label_is_undefined():
    with pytest.warns(UndefinedMetricWarning, match="Silhouette label"):
        assert np.isnan(silhouette_label(np.eye(3), ["a", "a", "a"]))
