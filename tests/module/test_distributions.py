"""Count likelihoods against scipy, and the distribution classes' moments and samplers."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from scipy import special, stats

from module_testdata import one_thread  # noqa: F401

from snakevi.module import (
    NegativeBinomial,
    Poisson,
    ZeroInflatedNegativeBinomial,
    log_nb_positive,
    log_poisson,
    log_zinb_positive,
)

X_VALUES = [0, 1, 2, 7, 50, 1000]
MU_VALUES = [0.1, 3.0, 40.0, 5000.0]
THETA_VALUES = [0.05, 1.0, 20.0, 1e4]
LOGIT_VALUES = [-4.0, 0.0, 2.5]

pytestmark = pytest.mark.usefixtures("one_thread")


def _grid(*axes):
    """Columns of the cartesian product of ``axes`` as float64 arrays."""
    return [np.asarray(col, dtype=np.float64) for col in zip(*itertools.product(*axes))]


def _nb_logpmf(x, mu, theta):
    return stats.nbinom.logpmf(x, n=theta, p=theta / (theta + mu))


def _t(a):
    return torch.as_tensor(a, dtype=torch.float64)


def test_log_nb_positive_matches_scipy_in_float64():
    x, mu, theta = _grid(X_VALUES, MU_VALUES, THETA_VALUES)
    got = log_nb_positive(_t(x), _t(mu), _t(theta)).numpy()
    np.testing.assert_allclose(got, _nb_logpmf(x, mu, theta), rtol=1e-5, atol=1e-7)


def test_log_nb_positive_float32_close_to_scipy():
    x, mu, theta = _grid([0, 1, 5, 30], [0.5, 3.0, 25.0], [0.5, 2.0, 10.0])
    got = log_nb_positive(*(torch.as_tensor(a, dtype=torch.float32) for a in (x, mu, theta))).numpy()
    np.testing.assert_allclose(got, _nb_logpmf(x, mu, theta), rtol=1e-4, atol=1e-4)


def test_log_nb_positive_broadcasts_gene_wise_theta():
    mu = torch.rand(4, 3, dtype=torch.float64) * 10 + 0.1
    theta = torch.tensor([0.5, 2.0, 8.0], dtype=torch.float64)
    x = torch.poisson(mu)
    full = log_nb_positive(x, mu, theta.expand(4, 3))
    assert torch.equal(log_nb_positive(x, mu, theta), full)


def test_log_zinb_positive_matches_scipy_mixture():
    x, mu, theta, logits = _grid(X_VALUES, MU_VALUES, THETA_VALUES, LOGIT_VALUES)
    pi = special.expit(logits)
    nb = _nb_logpmf(x, mu, theta)
    expected = np.where(x == 0, np.log(pi + (1 - pi) * np.exp(nb)), np.log1p(-pi) + nb)
    got = log_zinb_positive(_t(x), _t(mu), _t(theta), _t(logits)).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-7)


def test_log_poisson_matches_scipy():
    x, rate = _grid(X_VALUES, [0.01, 1.0, 30.0, 1e4])
    np.testing.assert_allclose(log_poisson(_t(x), _t(rate)).numpy(), stats.poisson.logpmf(x, rate), rtol=1e-10)


def test_classes_log_prob_equal_functions():
    mu = torch.rand(5, 4) * 20 + 0.1
    theta = torch.rand(4) * 5 + 0.1
    logits = torch.randn(5, 4)
    x = torch.poisson(mu)
    assert torch.equal(NegativeBinomial(mu, theta).log_prob(x), log_nb_positive(x, mu, theta))
    assert torch.equal(
        ZeroInflatedNegativeBinomial(mu, theta, logits).log_prob(x), log_zinb_positive(x, mu, theta, logits)
    )
    assert torch.equal(Poisson(mu).log_prob(x), log_poisson(x, mu))


def test_moments_match_scipy_and_mixture_algebra():
    mu = _t([[0.5, 3.0, 40.0]])
    theta = _t([0.2, 1.0, 15.0])
    logits = _t([[-1.0, 0.0, 1.5]])
    p = (theta / (theta + mu)).numpy()
    nb = NegativeBinomial(mu, theta)
    np.testing.assert_allclose(nb.mean.numpy(), stats.nbinom.mean(theta.numpy(), p))
    np.testing.assert_allclose(nb.variance.numpy(), stats.nbinom.var(theta.numpy(), p))

    zinb = ZeroInflatedNegativeBinomial(mu, theta, logits)
    pi = torch.sigmoid(logits)
    second_moment = (1 - pi) * (nb.variance + mu**2)
    np.testing.assert_allclose(zinb.mean.numpy(), ((1 - pi) * mu).numpy())
    np.testing.assert_allclose(zinb.variance.numpy(), (second_moment - zinb.mean**2).numpy(), rtol=1e-12)

    pois = Poisson(mu)
    assert torch.equal(pois.mean, mu) and torch.equal(pois.variance, mu)


def test_nb_sampler_moments():
    torch.manual_seed(0)
    mu, theta = torch.tensor([5.0]), torch.tensor([2.0])
    draws = NegativeBinomial(mu, theta).sample((40000,))
    assert draws.shape == (40000, 1)
    assert torch.equal(draws, draws.round()) and bool((draws >= 0).all())
    # mean 5, variance 17.5: standard error of the mean ~0.02
    assert abs(draws.mean().item() - 5.0) < 0.1
    assert abs(draws.var().item() - 17.5) / 17.5 < 0.05


def test_zinb_sampler_zero_fraction():
    torch.manual_seed(0)
    mu, theta, logits = torch.tensor([4.0]), torch.tensor([3.0]), torch.tensor([0.0])
    draws = ZeroInflatedNegativeBinomial(mu, theta, logits).sample((40000,))
    p0_nb = np.exp(_nb_logpmf(0, 4.0, 3.0))
    expected = 0.5 + 0.5 * p0_nb
    assert abs((draws == 0).float().mean().item() - expected) < 0.015


def test_samplers_shapes_and_gene_wise_theta():
    torch.manual_seed(0)
    mu = torch.rand(6, 3) * 5 + 0.5
    theta = torch.tensor([1.0, 2.0, 3.0])
    logits = torch.zeros(6, 3)
    assert NegativeBinomial(mu, theta).sample().shape == (6, 3)
    assert ZeroInflatedNegativeBinomial(mu, theta, logits).sample((2,)).shape == (2, 6, 3)
    assert Poisson(mu).sample((4,)).shape == (4, 6, 3)


def test_poisson_sampler_clamps_huge_rates():
    torch.manual_seed(0)
    draws = Poisson(torch.full((3,), 1e12)).sample()
    assert bool(torch.isfinite(draws).all())
    assert draws.max().item() < 1.01e8


def test_get_normalized_rejects_unknown_key():
    nb = NegativeBinomial(torch.ones(2), torch.ones(2), scale=torch.full((2,), 0.5))
    assert torch.equal(nb.get_normalized("scale"), torch.full((2,), 0.5))
    with pytest.raises(ValueError, match="'rate'"):
        nb.get_normalized("rate")
