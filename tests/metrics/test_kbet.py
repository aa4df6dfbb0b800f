"""kBET: the chi-square test by hand, and kBET per label on mixed and separated embeddings."""

import numpy as np
import pytest
from metric_data import mixed_batches, separated_batches
from scipy.stats import chi2

from snakevi.metrics import UndefinedMetricWarning, kbet, kbet_per_label


def test_chi_square_test_by_hand():
    batch = np.array([0, 0, 1, 1])  # expected composition 50/50
    # 4 neighbours each: 2/2 matches (stat 0), 4/0 gives (2^2 + 2^2) / 2 = 4 on 1 degree of freedom
    neighbours = np.array([[0, 0, 1, 1], [0, 0, 0, 0], [1, 1, 1, 1], [0, 1, 0, 1]])
    rate, stats, p = kbet(neighbours, batch, alpha=0.05)
    np.testing.assert_allclose(stats, [0, 4, 4, 0])
    np.testing.assert_allclose(p, chi2.sf(stats, df=1))
    assert rate == 0.5  # p = 0.0455 < 0.05 for the two one-batch neighbourhoods
    assert kbet(neighbours, batch, alpha=0.04)[0] == 1.0


def test_extremes():
    X, batch, labels = mixed_batches(per_cell=60)
    assert kbet_per_label(X, batch, labels) > 0.8
    X, batch, labels = separated_batches(per_cell=60)
    assert kbet_per_label(X, batch, labels) < 0.05


def test_small_or_single_batch_labels_are_skipped():
    X, batch, labels = mixed_batches(per_cell=60)
    labels = labels.astype(object)
    labels[:9] = "tiny"  # 9 cells: too few for kBET
    labels[-60:] = "one batch"  # the last 60 cells all come from batch 1
    score, per_label = kbet_per_label(X, batch, labels, return_per_label=True)
    assert np.isnan(per_label["tiny"]) and np.isnan(per_label["one batch"])
    assert score == pytest.approx(np.nanmean(list(per_label.values())))
    with pytest.warns(UndefinedMetricWarning, match="KBET"):
        assert np.isnan(kbet_per_label(X, np.zeros(len(X)), labels))


def test_is_deterministic_for_a_seed():
    X, batch, labels = mixed_batches(per_cell=60, seed=3)
    assert kbet_per_label(X, batch, labels, seed=1) == kbet_per_label(X, batch, labels, seed=1)
