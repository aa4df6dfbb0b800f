"""The zero case of the ZINB log-likelihood, summed over genes: the dense half of the ZINB loss.

Every entry of a minibatch is first given the zero case (``log_zinb_positive_cell_sum`` then
corrects the non-zero entries), ``sum_g softplus(p) - softplus(-pi)`` with
``p = theta * log(theta / (theta + mu)) - pi``. Two implementations, same value and gradients
to float32 round-off:

- :class:`ZinbZeroCaseSum`: torch operations with a closed-form backward (any device, dtype
  and shape of ``theta``).
- :class:`NativeZinbZeroCaseSum`: the C kernel of ``_native/zinb_zero_case.c``, one pass that
  writes the value and the local gradients together, for float32 CPU tensors with gene-wise
  ``theta`` (scVI's default dispersion), while torch runs at most two threads. About 5-10% less
  time per epoch on 2 CPU cores (benchmarks/README, issue 18).

:func:`zinb_zero_case_sum` picks the native one where it applies and was built (see
:mod:`snakevi.module.native`), and checks it once per process against the torch one.
"""

from __future__ import annotations

import ctypes
import functools

import torch
import torch.nn.functional as F

from snakevi.module import native

class ZinbZeroCaseSum(torch.autograd.Function):
    """``sum_g softplus(p) - softplus(-pi)``, ``p = theta * log(theta / (theta + mu)) - pi``, with its
    gradient in closed form: autograd's chain of small elementwise kernels (softplus, its
    backward, the products and the broadcast reductions) made the dense half of the ZINB loss
    the slowest part of a CPU step. Float32 and above; lower precisions are widened."""

    @staticmethod
    def forward(ctx, mu, theta, pi, eps: float):
        theta_eps = theta + eps
        log_theta_eps = torch.log(theta_eps)
        denominator = mu + theta_eps
        log_ratio = log_theta_eps - torch.log(denominator)  # log(theta / (theta + mu)), kept for backward
        p = theta * log_ratio - pi
        ctx.save_for_backward(mu, theta, pi, p, denominator, log_ratio)
        ctx.eps = eps
        return (F.softplus(p) - F.softplus(-pi)).sum(-1)

    @staticmethod
    def backward(ctx, grad):
        mu, theta, pi, p, denominator, log_ratio = ctx.saved_tensors
        g = grad.unsqueeze(-1)
        g_sigmoid_p = g * torch.sigmoid(p)
        theta_share = theta / denominator
        grad_mu = -g_sigmoid_p * theta_share
        grad_pi = g * torch.sigmoid(-pi) - g_sigmoid_p
        # d p / d theta = log(theta + eps) - log(theta + mu + eps) + theta/(theta + eps) - theta/(theta + mu + eps)
        grad_theta = g_sigmoid_p * (log_ratio + theta / (theta + ctx.eps) - theta_share)
        return (grad_mu.sum_to_size(mu.shape), grad_theta.sum_to_size(theta.shape), grad_pi.sum_to_size(pi.shape),
                None)


@functools.lru_cache(maxsize=1)
def _kernels():
    """The C library's two functions with their signatures, or ``None``."""
    library = native.load("zinb_zero_case")
    if library is None:
        return None
    size, ptr = ctypes.c_int64, ctypes.c_void_p
    with_gradients = library.zinb_zero_case_rows
    with_gradients.argtypes = [size, size, ptr, ptr, ptr, ptr, ptr, ctypes.c_float, ptr, ptr, ptr, ptr]
    value_only = library.zinb_zero_case_rows_value
    value_only.argtypes = [size, size, ptr, ptr, ptr, ptr, ctypes.c_float, ptr]
    with_gradients.restype = value_only.restype = None
    return with_gradients, value_only


class NativeZinbZeroCaseSum(torch.autograd.Function):
    """:class:`ZinbZeroCaseSum` by the C kernel: float32 CPU ``mu`` and ``pi`` of one shape
    ``(cells, genes)``, ``theta`` of shape ``(genes,)``. The forward writes the gradients of
    each entry along with the value (when any input wants a gradient), those of ``theta`` summed
    over the cells; the backward only scales them by each cell's incoming gradient."""

    @staticmethod
    def forward(ctx, mu, theta, pi, eps: float):
        with_gradients, value_only = _kernels()
        n_cells, n_genes = mu.shape
        mu, theta, pi = mu.contiguous(), theta.contiguous(), pi.contiguous()
        theta_eps = theta + eps
        log_theta_eps = torch.log(theta_eps)
        value = torch.empty(n_cells, dtype=torch.float32)
        if not any(ctx.needs_input_grad[:3]):
            value_only(n_cells, n_genes, mu.data_ptr(), theta.data_ptr(), log_theta_eps.data_ptr(), pi.data_ptr(),
                       eps, value.data_ptr())
            return value
        theta_share_eps = theta / theta_eps
        d_mu, d_pi = (torch.empty(n_cells, n_genes, dtype=torch.float32) for _ in range(2))
        d_theta_sum = torch.zeros(n_genes, dtype=torch.float32)
        with_gradients(n_cells, n_genes, mu.data_ptr(), theta.data_ptr(), log_theta_eps.data_ptr(),
                       theta_share_eps.data_ptr(), pi.data_ptr(), eps, value.data_ptr(), d_mu.data_ptr(),
                       d_pi.data_ptr(), d_theta_sum.data_ptr())
        ctx.save_for_backward(d_mu, d_pi, d_theta_sum, mu, theta, pi)
        ctx.eps = eps
        return value

    @staticmethod
    def backward(ctx, grad):
        d_mu, d_pi, d_theta_sum, mu, theta, pi = ctx.saved_tensors
        g = grad.unsqueeze(-1)
        want_mu, want_theta, want_pi = ctx.needs_input_grad[:3]
        grad_theta = None
        if want_theta:
            # A loss that averages over cells (scVI's) gives every cell the same weight: theta's
            # gradient is then the kernel's sum, scaled. Other weights take the torch formula.
            if grad.numel() == 0 or bool((grad == grad[0]).all()):
                grad_theta = d_theta_sum * (grad[0] if grad.numel() else 0.0)
            else:
                grad_theta = _theta_gradient(mu, theta, pi, ctx.eps, g)
        return d_mu * g if want_mu else None, grad_theta, d_pi * g if want_pi else None, None


def _theta_gradient(mu, theta, pi, eps: float, g):
    """``sum_cells g * d value / d theta`` of the zero case, by torch operations."""
    theta_eps = theta + eps
    denominator = mu + theta_eps
    log_ratio = torch.log(theta_eps) - torch.log(denominator)
    sigmoid_p = torch.sigmoid(theta * log_ratio - pi)
    return (g * sigmoid_p * (log_ratio + theta / theta_eps - theta / denominator)).sum(0)


def _native_agrees() -> bool:
    """Whether the C kernel gives the torch implementation's value and gradients (to float32
    round-off) on a small fixed example: a guard against an odd compiler or C library, run once
    per process."""
    gen = torch.Generator().manual_seed(0)
    mu = torch.rand(3, 37, generator=gen) * 20
    theta = torch.rand(37, generator=gen) * 10 + 1e-3
    pi = torch.randn(3, 37, generator=gen) * 8
    results = {ZinbZeroCaseSum: [], NativeZinbZeroCaseSum: []}
    with torch.inference_mode(False), torch.enable_grad():  # also when first called while predicting
        for weight in (torch.rand(3, generator=gen), torch.full((3,), 1 / 3)):  # theta's two backward paths
            for function, out in results.items():
                inputs = [t.clone().requires_grad_() for t in (mu, theta, pi)]
                value = function.apply(*inputs, 1e-8)
                (value * weight).sum().backward()
                out += [value.detach(), *(t.grad for t in inputs)]
    return all(torch.allclose(a, b, rtol=1e-5, atol=1e-5) for a, b in zip(*results.values()))


def native_available() -> bool:
    """Whether :class:`NativeZinbZeroCaseSum` is built, loaded and checked in this process."""
    return native.available("zinb_zero_case", lambda: _kernels() is not None and _native_agrees())


def _fits_native(mu: torch.Tensor, theta: torch.Tensor, pi: torch.Tensor) -> bool:
    return (mu.dim() == 2 and theta.dim() == 1 and pi.shape == mu.shape and theta.shape[0] == mu.shape[1]
            and native.fits(mu, theta, pi))


def zinb_zero_case_sum(mu: torch.Tensor, theta: torch.Tensor, pi: torch.Tensor, eps: float) -> torch.Tensor:
    """``sum_g softplus(p) - softplus(-pi)`` per cell, by the C kernel where it applies (float32 CPU
    tensors, gene-wise ``theta``, at most :data:`~snakevi.module.native.MAX_TORCH_THREADS` torch
    threads), else by torch."""
    if _fits_native(mu, theta, pi) and native_available():
        return NativeZinbZeroCaseSum.apply(mu, theta, pi, eps)
    return ZinbZeroCaseSum.apply(mu, theta, pi, eps)
