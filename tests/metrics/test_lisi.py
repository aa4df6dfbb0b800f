"""LISI: a tiny hand-made graph, the perplexity calibration, and mixed/separated extremes."""

import numpy as np
import pytest
from metric_data import mixed_batches, mixed_labels, separated_batches

from snakevi.metrics import Neighbors, UndefinedMetricWarning, clisi_knn, ilisi_knn, lisi_knn
from snakevi.metrics.lisi import neighbor_probabilities


def tiny_graph():
    """Cell 0 with four equidistant neighbours; the others see cell 0 and three more."""
    idx = np.array([[0, 1, 2, 3, 4], [1, 0, 2, 3, 4], [2, 0, 1, 3, 4], [3, 0, 1, 2, 4], [4, 0, 1, 2, 3]])
    return Neighbors(idx, np.where(idx == np.arange(5)[:, None], 0.0, 1.0))


def test_tiny_graph_hand_values():
    nb = tiny_graph()
    # equal distances: weights are uniform (1/4 each) whatever beta, the cell itself gets none
    P = neighbor_probabilities(nb, perplexity=2)
    np.testing.assert_allclose(P[:, 0], 0.0)
    np.testing.assert_allclose(P[:, 1:], 0.25)
    # cell 0's neighbours: two of batch "x", two of "y" -> 1 / (0.5^2 + 0.5^2) = 2
    batch = np.array(["x", "x", "y", "x", "y"])
    lisi = lisi_knn(nb, batch, k=5, perplexity=2)
    assert lisi[0] == pytest.approx(2.0)
    # cell 1 sees 0 (x), 2 (y), 3 (x), 4 (y): also 2; cell 2 sees x, x, x, y: 1 / (0.75^2 + 0.25^2) = 1.6
    assert lisi[1] == pytest.approx(2.0) and lisi[2] == pytest.approx(1.6)
    # scaled iLISI = (median - 1) / (n_batches - 1)
    assert ilisi_knn(nb, batch, k=5, perplexity=2) == pytest.approx(np.median(lisi) - 1.0)
    assert clisi_knn(nb, batch, k=5, perplexity=2) == pytest.approx(2.0 - np.median(lisi))


def test_weights_reach_the_perplexity():
    X = np.random.default_rng(0).normal(size=(300, 3))
    from snakevi.metrics import exact_knn

    nb = exact_knn(X, 30)
    P = neighbor_probabilities(nb)  # default perplexity floor(30 / 3) = 10
    np.testing.assert_allclose(P.sum(axis=1), 1.0)
    # the entropy target of the bisection is log(perplexity), in the weights exp(-beta * d)
    with np.errstate(divide="ignore", invalid="ignore"):
        H = -np.nansum(np.where(P > 0, P * np.log(P), 0.0), axis=1)
    np.testing.assert_allclose(H, np.log(10), atol=1e-4)


def test_extremes():
    X, batch, labels = mixed_batches(per_cell=60)
    assert ilisi_knn(X, batch) > 0.85
    assert clisi_knn(X, labels) == pytest.approx(1.0)
    X, batch, labels = separated_batches(per_cell=60)
    assert ilisi_knn(X, batch) < 0.05
    X, _, labels = mixed_labels(per_cell=40)
    assert clisi_knn(X, labels) < 0.25


def test_one_category_is_undefined():
    X, batch, labels = mixed_batches()
    with pytest.warns(UndefinedMetricWarning, match="iLISI"):
        assert np.isnan(ilisi_knn(X, np.zeros(len(X))))
    with pytest.warns(UndefinedMetricWarning, match="cLISI"):
        assert np.isnan(clisi_knn(X, np.zeros(len(X))))
