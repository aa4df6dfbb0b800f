"""Count likelihoods of scVI: negative binomial, zero-inflated NB and Poisson.

The log-probability formulas are scvi-tools' (``scvi/distributions/_negative_binomial.py``),
term for term and with the same ``eps=1e-8``, so per-cell losses agree with scvi-tools to
floating-point round-off. Two differences, both for speed and neither changing a value:

- No argument or sample validation. torch's validation reduces a tensor to a Python bool,
  which forces a device-to-host sync on every minibatch.
- ``theta`` keeps its own shape (``(n_genes,)`` for gene-wise dispersion) instead of being
  broadcast to ``(n_cells, n_genes)`` up front, so ``lgamma(theta)`` and ``log(theta + eps)``
  are computed once per gene rather than once per cell and gene.

The training loss needs only each cell's sum over genes; ``log_nb_positive_cell_sum`` and
``log_zinb_positive_cell_sum`` give it with the count-dependent terms (``lgamma`` and the rest)
taken at the non-zero counts only, the zero case once over all entries: the same value to
float32 round-off, about twice as fast for counts 8% non-zero (the VAE uses them on the CPU).

Parametrisation: ``mu`` is the mean, ``theta`` the inverse dispersion, so that
``Var = mu + mu**2 / theta``; the ZINB adds ``zi_logits``, the logit of the probability of an
extra zero.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch.distributions import Distribution, Gamma, constraints

from snakevi.module.special import lgamma_positive
from snakevi.module.zinb_zero_case import zinb_zero_case_sum

#: Rates above this are clamped before Poisson sampling; torch's sampler misbehaves beyond it.
MAX_POISSON_RATE = 1e8


def log_nb_positive(
    x: torch.Tensor, mu: torch.Tensor, theta: torch.Tensor, eps: float = 1e-8, *, with_count_constant: bool = True
) -> torch.Tensor:
    """Elementwise log-likelihood of counts under a negative binomial.

    Parameters
    ----------
    x
        Observed counts, shape ``(..., n_genes)``.
    mu
        Mean, positive, broadcastable against ``x``.
    theta
        Inverse dispersion, positive, broadcastable against ``x`` (``(n_genes,)`` is fine).
    eps
        Added inside every logarithm for numerical stability.
    with_count_constant
        Include ``-log(x!)``. It depends on the data only, so a caller that already has
        ``sum_g log(x_g!)`` per cell (see :func:`log_count_constant`) can leave it out and
        save the most expensive elementwise op of the loss.

    Returns
    -------
    Tensor of the broadcast shape of ``x``, ``mu`` and ``theta``.
    """
    log_theta_mu_eps = torch.log(theta + mu + eps)
    res = (
        theta * (torch.log(theta + eps) - log_theta_mu_eps)
        + x * (torch.log(mu + eps) - log_theta_mu_eps)
        + torch.lgamma(x + theta)
        - torch.lgamma(theta)
    )
    return res - torch.lgamma(x + 1) if with_count_constant else res


def log_zinb_positive(
    x: torch.Tensor,
    mu: torch.Tensor,
    theta: torch.Tensor,
    pi_logits: torch.Tensor,
    eps: float = 1e-8,
    *,
    with_count_constant: bool = True,
) -> torch.Tensor:
    """Elementwise log-likelihood of counts under a zero-inflated negative binomial.

    Parameters
    ----------
    x
        Observed counts, shape ``(..., n_genes)``.
    mu
        NB mean, positive.
    theta
        NB inverse dispersion, positive (``(n_genes,)`` is fine).
    pi_logits
        Logit of the zero-inflation probability.
    eps
        Added inside every logarithm; also the threshold below which a count is a zero.
    with_count_constant
        Include ``-log(x!)`` (zero wherever ``x`` is 0 or 1). It depends on the data only, so a caller that already has
        ``sum_g log(x_g!)`` per cell (see :func:`log_count_constant`) can leave it out and
        save the most expensive elementwise op of the loss.

    Returns
    -------
    Tensor of the broadcast shape of the inputs.

    Notes
    -----
    Uses ``log(sigmoid(a)) = -softplus(-a)`` as scvi-tools does. scvi-tools combines the two
    cases with float masks (``mask0 * case_zero + mask1 * case_non_zero``); ``torch.where``
    gives the same value wherever both cases are finite and keeps a non-finite unused case
    from turning the result (or its gradient) into NaN.
    """
    softplus_pi = F.softplus(-pi_logits)
    log_theta_eps = torch.log(theta + eps)
    log_theta_mu_eps = torch.log(theta + mu + eps)
    pi_theta_log = -pi_logits + theta * (log_theta_eps - log_theta_mu_eps)

    case_zero = F.softplus(pi_theta_log) - softplus_pi
    case_non_zero = (
        -softplus_pi
        + pi_theta_log
        + x * (torch.log(mu + eps) - log_theta_mu_eps)
        + torch.lgamma(x + theta)
        - torch.lgamma(theta)
    )
    if with_count_constant:
        case_non_zero = case_non_zero - torch.lgamma(x + 1)
    return torch.where(x < eps, case_zero, case_non_zero)


def _nonzero_entries(x: torch.Tensor, at_least: float | None = None):
    """``(flat index, row, column, value)`` of the non-zero entries of a 2-D ``x``, row by row;
    with ``at_least``, of the entries that are not below it (a count below it counts as a zero)."""
    flat = x.reshape(-1)
    # nonzero() of a bool mask is faster than of the float values (torch 2.13, CPU), comparison included.
    index = torch.nonzero(flat != 0 if at_least is None else flat >= at_least).squeeze(1)
    row = torch.div(index, x.shape[1], rounding_mode="floor")
    return index, row, index - row * x.shape[1], _take(flat, index)


def _take(values: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``values[index]`` of a 1-D tensor, with a deterministic backward.

    ``values[index]``'s backward (``index_put_`` with accumulation) adds float32 gradients with
    atomic adds in parallel on the CPU once there are 32,768 or more (torch 2.13): the sum of a
    gene's gradients then depends on thread timing, and reruns stop being bit-identical.
    ``index_select``'s backward (``index_add_``) adds them in order.
    """
    return torch.index_select(values, 0, index)


def _lgamma_at(theta: torch.Tensor, th: torch.Tensor, column: torch.Tensor) -> torch.Tensor:
    """``lgamma(theta)`` at the non-zero entries (``th``): of a gene-wise ``theta`` taken once per
    gene and gathered, so that its backward (``digamma``, a slow scalar kernel) runs per gene."""
    return _take(lgamma_positive(theta), column) if theta.dim() == 1 else lgamma_positive(th)


def _at(values: torch.Tensor, like: torch.Tensor, index: torch.Tensor, column: torch.Tensor) -> torch.Tensor:
    """``values`` (gene-wise ``(n_genes,)`` or ``like``'s shape) at the flat entries ``index``."""
    if values.dim() == 1:
        return _take(values, column)
    return _take(values.expand_as(like).reshape(-1), index)


def _count_terms(start, xv, mu_nz, log_theta_mu_nz, th, theta, column, eps: float,
                 with_count_constant: bool) -> torch.Tensor:
    """``[start +] x * log(mu / (theta + mu)) + lgamma(x + theta) - lgamma(theta) [- log(x!)]`` at the
    non-zero entries (values ``xv``, gathered ``mu_nz``, ``log(theta + mu + eps)`` and ``th``): the
    count terms the NB and ZINB cell sums share, added left to right."""
    term = xv * (torch.log(mu_nz + eps) - log_theta_mu_nz)
    if start is not None:
        term = start + term
    term = term + lgamma_positive(xv + th) - _lgamma_at(theta, th, column)
    return term - torch.lgamma(xv + 1) if with_count_constant else term


def log_nb_positive_cell_sum(x: torch.Tensor, mu: torch.Tensor, theta: torch.Tensor, eps: float = 1e-8, *,
                             with_count_constant: bool = True) -> torch.Tensor:
    """``log_nb_positive(x, mu, theta).sum(-1)`` for 2-D ``x``, the count terms taken at the non-zeros only.

    Where ``x = 0`` the log-likelihood is ``theta * (log(theta) - log(theta + mu))``: the terms
    ``x * log(mu / (theta + mu))``, ``lgamma(x + theta) - lgamma(theta)`` and ``-log(x!)`` are 0
    there. With single-cell counts mostly zero (about 8% non-zero), computing them, above all
    ``lgamma`` and its ``digamma`` backward, at the non-zero entries only makes the likelihood
    about twice as fast on the CPU. Same value as the dense sum to float32 round-off (another
    order of additions).
    """
    log_theta_mu_eps = torch.log(theta + mu + eps)
    dense = (theta * (torch.log(theta + eps) - log_theta_mu_eps)).sum(-1)
    index, row, column, xv = _nonzero_entries(x)
    th = _at(theta, mu, index, column)
    term = _count_terms(None, xv, _take(mu.reshape(-1), index), _take(log_theta_mu_eps.reshape(-1), index), th,
                        theta, column, eps, with_count_constant)
    return dense.index_add(0, row, term)


def log_zinb_positive_cell_sum(x: torch.Tensor, mu: torch.Tensor, theta: torch.Tensor, pi_logits: torch.Tensor,
                               eps: float = 1e-8, *, with_count_constant: bool = True) -> torch.Tensor:
    """``log_zinb_positive(...).sum(-1)`` for 2-D ``x``, the non-zero case taken at the non-zeros only.

    Every entry is first given the zero case, ``softplus(p) - softplus(-pi)`` with
    ``p = -pi + theta * log(theta / (theta + mu))`` (one fused forward and closed-form backward,
    :func:`~snakevi.module.zinb_zero_case.zinb_zero_case_sum`, in C where it applies); a non-zero
    entry then adds the difference of its own case,
    ``logsigmoid(p) + x * log(mu / (theta + mu)) + lgamma(x + theta) - lgamma(theta) [- log(x!)]``
    (the ``softplus(-pi)`` of both cases cancels), ``p`` recomputed there from the gathered
    parameters. See :func:`log_nb_positive_cell_sum` for why.
    """
    mu, theta, pi_logits = (t.float() if t.dtype in (torch.float16, torch.bfloat16) else t
                            for t in (mu, theta, pi_logits))
    dense = zinb_zero_case_sum(mu, theta, pi_logits, eps)
    # A count below eps is a zero, as in log_zinb_positive: left out by the search's own mask
    # (a torch.where over every entry first cost more than the search itself).
    index, row, column, xv = _nonzero_entries(x, at_least=eps)
    th = _at(theta, mu, index, column)
    mu_nz = _take(mu.reshape(-1), index)
    log_theta_mu_eps = torch.log(th + mu_nz + eps)
    pi_theta_log = th * (torch.log(th + eps) - log_theta_mu_eps) - _at(pi_logits, mu, index, column)
    term = _count_terms(F.logsigmoid(pi_theta_log), xv, mu_nz, log_theta_mu_eps, th, theta, column, eps,
                        with_count_constant)
    return dense.index_add(0, row, term.to(dense.dtype))


def log_poisson(x: torch.Tensor, rate: torch.Tensor, *, with_count_constant: bool = True) -> torch.Tensor:
    """Elementwise Poisson log-likelihood, the formula of ``torch.distributions.Poisson``.

    ``with_count_constant=False`` leaves out ``-log(x!)``, as in :func:`log_nb_positive`.
    """
    res = torch.xlogy(x, rate) - rate
    return res - torch.lgamma(x + 1) if with_count_constant else res


def log_count_constant(x: torch.Tensor) -> torch.Tensor:
    """``sum_g log(x_g!)`` per cell: the data-only term of every count log-likelihood here.

    The loaders compute it once per cell from the sparse counts (see
    :func:`snakevi.data.celldata.count_log_factorials`); this dense form is the reference.
    """
    return torch.lgamma(x + 1).sum(-1)


def _shape_of(*tensors: torch.Tensor) -> torch.Size:
    # numpy's rule is the same; torch.broadcast_shapes imports torch.fx (~2 s) on first use.
    return torch.Size(np.broadcast_shapes(*(tuple(t.shape) for t in tensors)))


class _CountDistribution(Distribution):
    """Shared plumbing: no validation, ``scale`` kept for normalised expression."""

    arg_constraints: dict = {}
    support = constraints.nonnegative_integer
    has_rsample = False

    def get_normalized(self, key: str) -> torch.Tensor:
        """Return ``"mu"`` (the mean of the count model) or ``"scale"`` (the decoder's scale)."""
        if key == "mu":
            return self.mu
        if key == "scale":
            return self.scale
        raise ValueError(f"get_normalized: key {key!r} is not one of 'mu', 'scale'.")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(batch_shape={tuple(self.batch_shape)})"


class NegativeBinomial(_CountDistribution):
    r"""Negative binomial with mean ``mu`` and inverse dispersion ``theta``.

    Sampling is gamma-Poisson: :math:`w \sim \mathrm{Gamma}(\theta, \theta/\mu)`, then
    :math:`x \sim \mathrm{Poisson}(w)` with ``w`` clamped at ``1e8``.

    Parameters
    ----------
    mu
        Mean, shape ``(..., n_genes)``.
    theta
        Inverse dispersion, broadcastable against ``mu``.
    scale
        Optional normalised expression (the decoder's ``px_scale``); stored, never used here.
    """

    def __init__(self, mu: torch.Tensor, theta: torch.Tensor, scale: torch.Tensor | None = None):
        self.mu = mu
        self.theta = theta
        self.scale = scale
        self._eps = 1e-8
        super().__init__(batch_shape=_shape_of(mu, theta), validate_args=False)

    @property
    def mean(self) -> torch.Tensor:
        return self.mu.expand(self.batch_shape)

    @property
    def variance(self) -> torch.Tensor:
        return self.mu + self.mu**2 / self.theta

    def log_prob(self, value: torch.Tensor, with_count_constant: bool = True) -> torch.Tensor:
        return log_nb_positive(value, self.mu, self.theta, eps=self._eps, with_count_constant=with_count_constant)

    def log_prob_cell_sum(self, value: torch.Tensor, with_count_constant: bool = True) -> torch.Tensor:
        """``log_prob(value).sum(-1)`` of 2-D counts, the count terms at the non-zeros only."""
        return log_nb_positive_cell_sum(value, self.mu, self.theta, eps=self._eps,
                                        with_count_constant=with_count_constant)

    def _gamma_rates(self, sample_shape: torch.Size) -> torch.Tensor:
        mu, theta = self.mu.expand(self.batch_shape), self.theta.expand(self.batch_shape)
        gamma = Gamma(concentration=theta, rate=theta / mu, validate_args=False)
        return torch.clamp(gamma.sample(sample_shape), max=MAX_POISSON_RATE)

    @torch.no_grad()
    def sample(self, sample_shape: torch.Size | tuple = torch.Size()) -> torch.Tensor:
        """Draw counts of shape ``sample_shape + batch_shape``."""
        return torch.poisson(self._gamma_rates(torch.Size(sample_shape)))


class ZeroInflatedNegativeBinomial(NegativeBinomial):
    """Negative binomial mixed with a point mass at zero of probability ``sigmoid(zi_logits)``.

    Parameters
    ----------
    mu
        NB mean, shape ``(..., n_genes)``.
    theta
        NB inverse dispersion, broadcastable against ``mu``.
    zi_logits
        Logit of the zero-inflation probability, broadcastable against ``mu``.
    scale
        Optional normalised expression, stored only.
    """

    def __init__(
        self, mu: torch.Tensor, theta: torch.Tensor, zi_logits: torch.Tensor, scale: torch.Tensor | None = None
    ):
        self.zi_logits = zi_logits
        super().__init__(mu, theta, scale=scale)
        self._batch_shape = _shape_of(mu, theta, zi_logits)

    @property
    def zi_probs(self) -> torch.Tensor:
        """Probability of an extra zero, ``sigmoid(zi_logits)``."""
        return torch.sigmoid(self.zi_logits)

    @property
    def mean(self) -> torch.Tensor:
        return (1 - self.zi_probs) * self.mu

    @property
    def variance(self) -> torch.Tensor:
        pi = self.zi_probs
        return (1 - pi) * self.mu * (self.mu + self.theta + pi * self.mu * self.theta) / self.theta

    def log_prob(self, value: torch.Tensor, with_count_constant: bool = True) -> torch.Tensor:
        return log_zinb_positive(
            value, self.mu, self.theta, self.zi_logits, eps=self._eps, with_count_constant=with_count_constant
        )

    def log_prob_cell_sum(self, value: torch.Tensor, with_count_constant: bool = True) -> torch.Tensor:
        """``log_prob(value).sum(-1)`` of 2-D counts, the non-zero case at the non-zeros only."""
        return log_zinb_positive_cell_sum(value, self.mu, self.theta, self.zi_logits, eps=self._eps,
                                          with_count_constant=with_count_constant)

    @torch.no_grad()
    def sample(self, sample_shape: torch.Size | tuple = torch.Size()) -> torch.Tensor:
        """Draw NB counts, then zero each with probability ``zi_probs`` (scvi-tools' order)."""
        sample_shape = torch.Size(sample_shape)
        counts = torch.poisson(self._gamma_rates(sample_shape))
        is_zero = torch.rand_like(counts) <= self.zi_probs
        return torch.where(is_zero, torch.zeros_like(counts), counts)


class Poisson(_CountDistribution):
    """Poisson with rate ``rate``; sampling clamps the rate at ``1e8``.

    Parameters
    ----------
    rate
        Mean, shape ``(..., n_genes)``.
    scale
        Optional normalised expression, stored only.
    """

    def __init__(self, rate: torch.Tensor, scale: torch.Tensor | None = None):
        self.rate = rate
        self.scale = scale
        super().__init__(batch_shape=rate.shape, validate_args=False)

    @property
    def mu(self) -> torch.Tensor:
        return self.rate

    @property
    def mean(self) -> torch.Tensor:
        return self.rate

    @property
    def variance(self) -> torch.Tensor:
        return self.rate

    def log_prob(self, value: torch.Tensor, with_count_constant: bool = True) -> torch.Tensor:
        return log_poisson(value, self.rate, with_count_constant=with_count_constant)

    @torch.no_grad()
    def sample(self, sample_shape: torch.Size | tuple = torch.Size()) -> torch.Tensor:
        """Draw counts of shape ``sample_shape + batch_shape``."""
        rate = torch.clamp(self.rate, max=MAX_POISSON_RATE)
        return torch.poisson(rate.expand(torch.Size(sample_shape) + rate.shape))
