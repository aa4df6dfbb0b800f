"""PCR and PCR comparison: the between-batch share of variance, and the relative reduction."""

import numpy as np
import pytest

from snakevi.metrics import UndefinedMetricWarning, pcr_comparison, principal_component_regression


def shifted(seed=0, shift=3.0):
    rng = np.random.default_rng(seed)
    batch = np.repeat(["b0", "b1", "b2"], 50)
    X = rng.normal(size=(150, 4))
    X[:, 0] += np.repeat([0.0, shift, -shift], 50)
    return X, batch


def test_pcr_with_all_components_is_the_between_batch_share_of_variance():
    X, batch = shifted()
    centred = X - X.mean(axis=0)
    between = sum((batch == b).sum() * np.sum((X[batch == b].mean(axis=0) - X.mean(axis=0)) ** 2)
                  for b in np.unique(batch))
    assert principal_component_regression(X, batch) == pytest.approx(between / np.sum(centred**2))


def test_pcr_with_some_components_and_a_numeric_covariate():
    rng = np.random.default_rng(1)
    x = rng.normal(size=200)
    X = np.column_stack([10 * x, rng.normal(size=200)])  # PC1 is x (variance ~100), PC2 noise
    # numeric covariate = x: PC1 is x up to a tilt from the noise column, so its R^2 is ~1
    got = principal_component_regression(X, x, categorical=False, n_components=1)
    assert got == pytest.approx(1.0, abs=1e-4)
    both = principal_component_regression(X, x, categorical=False)
    share = np.var(X[:, 0]) / (np.var(X[:, 0]) + np.var(X[:, 1]))
    assert both == pytest.approx(share, abs=0.02)


def test_pcr_comparison_extremes():
    X, batch = shifted()
    corrected = X.copy()
    for b in np.unique(batch):
        corrected[batch == b] -= corrected[batch == b].mean(axis=0)
    assert pcr_comparison(X, corrected, batch) == pytest.approx(1.0)
    assert pcr_comparison(X, X, batch) == pytest.approx(0.0, abs=1e-12)
    worse, _ = shifted(shift=6.0)
    with pytest.warns(UserWarning, match="set to 0"):
        assert pcr_comparison(X, worse, batch) == 0.0
    assert pcr_comparison(X, worse, batch, scale=False) > 0


def test_pcr_comparison_with_one_batch_is_undefined():
    X, _ = shifted()
    with pytest.warns(UndefinedMetricWarning, match="PCR comparison"):
        assert np.isnan(pcr_comparison(X, X, np.zeros(len(X))))
