"""Input checks shared by every metric: shapes, lengths, NaN, labels as strings or integers."""

import numpy as np
import pandas as pd
import pytest

from snakevi.metrics import MetricInputError, integration_metrics, silhouette_label
from snakevi.metrics._inputs import as_codes, as_embedding


def test_length_mismatch_names_both_lengths():
    X = np.zeros((12, 3))
    with pytest.raises(MetricInputError, match=r"labels has 10 values but the embedding has 12 cells"):
        silhouette_label(X, np.arange(10) % 2)
    with pytest.raises(MetricInputError, match=r"batch has 11 values but the embedding has 12 cells"):
        integration_metrics(X, np.zeros(11), np.arange(12) % 2)


def test_pre_integrated_with_other_cells_is_refused():
    X = np.random.default_rng(0).normal(size=(12, 3))
    with pytest.raises(MetricInputError, match=r"pre_integrated has 5 cells .* embedding has 12"):
        integration_metrics(X, np.arange(12) % 2, np.arange(12) % 3, pre_integrated=np.zeros((5, 2)))


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_embedding_is_refused_with_the_row(bad):
    X = np.zeros((6, 2))
    X[4, 1] = bad
    with pytest.raises(MetricInputError, match=r"NaN or infinite values in 1 of 6 cells \(first at row 4\)"):
        as_embedding(X)


def test_embedding_shape_and_dtype_checks():
    with pytest.raises(MetricInputError, match="2-D"):
        as_embedding(np.zeros((2, 2, 2)))
    with pytest.raises(MetricInputError, match="empty"):
        as_embedding(np.zeros((0, 3)))
    with pytest.raises(MetricInputError, match="numbers"):
        as_embedding(np.array([["a", "b"]]))
    assert as_embedding(np.arange(4, dtype=np.float32)).shape == (4, 1)


def test_missing_labels_are_refused():
    with pytest.raises(MetricInputError, match=r"missing \(None/NaN\) for 1 of 3 cells \(first at row 1\)"):
        as_codes(np.array(["a", None, "b"], dtype=object), "labels")


def test_strings_integers_and_categoricals_give_the_same_codes():
    strings = np.array(["b", "a", "b", "c"])
    ints = np.array([1, 0, 1, 2])
    cat = pd.Series(pd.Categorical(strings, categories=["a", "b", "c", "unused"]))
    for values in (strings, ints, cat, list(strings)):
        codes, cats = as_codes(values, "labels", 4)
        np.testing.assert_array_equal(codes, [1, 0, 1, 2])
        assert len(cats) == 3
