"""The cell sums of the NB/ZINB log-likelihood taken at the non-zero counts equal the dense sums."""

from __future__ import annotations

import pytest
import torch

from snakevi.module.distributions import (
    NegativeBinomial,
    ZeroInflatedNegativeBinomial,
    log_nb_positive,
    log_nb_positive_cell_sum,
    log_zinb_positive,
    log_zinb_positive_cell_sum,
)


def _counts(n=40, g=30, density=0.1, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = (torch.rand(n, g, generator=gen) < density).double() * torch.randint(1, 50, (n, g), generator=gen).double()
    x[3] = 0.0  # a cell without counts
    x[5] = torch.randint(1, 9, (g,), generator=gen).double()  # and one without zeros
    return x


def _parameters(n, g, theta_shape, seed=1):
    gen = torch.Generator().manual_seed(seed)
    mu = (torch.rand(n, g, generator=gen, dtype=torch.float64) * 20 + 1e-3).requires_grad_()
    theta = (torch.rand(*theta_shape, generator=gen, dtype=torch.float64) * 8 + 0.05).requires_grad_()
    pi = (torch.randn(n, g, generator=gen, dtype=torch.float64) * 2).requires_grad_()
    return mu, theta, pi


@pytest.mark.parametrize("theta_shape", [(30,), (40, 30)], ids=["gene", "gene-cell"])
@pytest.mark.parametrize("with_count_constant", [True, False])
@pytest.mark.parametrize("zinb", [True, False], ids=["zinb", "nb"])
def test_values_and_gradients_equal_the_dense_sum(theta_shape, with_count_constant, zinb):
    x = _counts()
    results = []
    for cell_sum in (True, False):
        mu, theta, pi = _parameters(*x.shape, theta_shape)
        if zinb:
            f = log_zinb_positive_cell_sum if cell_sum else log_zinb_positive
            value = f(x, mu, theta, pi, with_count_constant=with_count_constant)
        else:
            f = log_nb_positive_cell_sum if cell_sum else log_nb_positive
            value = f(x, mu, theta, with_count_constant=with_count_constant)
        value = value if cell_sum else value.sum(-1)
        value.sum().backward()
        results.append((value.detach(), mu.grad, theta.grad, pi.grad))
    (v1, *g1), (v2, *g2) = results
    torch.testing.assert_close(v1, v2, rtol=1e-12, atol=1e-9)
    for a, b in zip(g1, g2):
        if b is None:
            assert a is None or not a.any()
        else:
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_counts_below_eps_are_zeros_as_in_the_dense_zinb():
    x = _counts()
    x[0, :5] = 1e-9  # below eps: the dense form takes the zero case
    mu, theta, pi = _parameters(*x.shape, (30,))
    dense = log_zinb_positive(x, mu, theta, pi).sum(-1)
    torch.testing.assert_close(log_zinb_positive_cell_sum(x, mu, theta, pi), dense, rtol=1e-12, atol=1e-9)


def test_the_distributions_offer_the_cell_sum_in_float32():
    x = _counts().float()
    mu, theta, pi = (t.detach().float() for t in _parameters(*x.shape, (30,)))
    for px in (NegativeBinomial(mu, theta), ZeroInflatedNegativeBinomial(mu, theta, pi)):
        torch.testing.assert_close(px.log_prob_cell_sum(x), px.log_prob(x).sum(-1), rtol=1e-5, atol=1e-3)


@pytest.mark.parametrize("zinb", [True, False], ids=["zinb", "nb"])
def test_gradients_are_bit_identical_between_reruns_with_many_non_zeros_and_threads(zinb):
    # Above 32,768 gathered entries torch's backward of values[index] adds float32 gradients
    # atomically in parallel (thread timing decides the order); the cell sums must not use it.
    x = _counts(n=256, g=500, density=0.4).float()  # about 51,000 non-zeros
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        grads = []
        for _ in range(4):
            mu, theta, pi = (t.detach().float().requires_grad_() for t in _parameters(*x.shape, (500,)))
            value = (log_zinb_positive_cell_sum(x, mu, theta, pi) if zinb else log_nb_positive_cell_sum(x, mu, theta))
            value.sum().backward()
            grads.append((mu.grad, theta.grad) + ((pi.grad,) if zinb else ()))
    finally:
        torch.set_num_threads(previous)
    for other in grads[1:]:
        assert all(torch.equal(a, b) for a, b in zip(grads[0], other))
