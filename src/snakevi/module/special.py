"""``lgamma`` of positive arguments whose backward takes ``digamma`` from a C kernel on the CPU.

The NB and ZINB cell sums take ``lgamma(x + theta)`` at a minibatch's non-zero counts; its
backward, ``digamma``, is a scalar loop in torch's CPU build (7-10 ns an entry, 150-200 us at
128 x 2,000 and 8% non-zero). ``_native/special.c`` computes it in one vectorised pass (about
20 us there), to float32 accuracy like torch's. Used for float32 CPU tensors while torch runs at
most :data:`snakevi.module.native.MAX_TORCH_THREADS` threads, once checked against
``torch.digamma`` in the process; otherwise, and on any device, the torch functions run.
"""

from __future__ import annotations

import ctypes
import functools

import torch

from snakevi.module import native

@functools.lru_cache(maxsize=1)
def _kernel():
    """The C ``digamma_positive`` with its signature, or ``None``."""
    library = native.load("special")
    if library is None:
        return None
    function = library.digamma_positive
    function.argtypes = [ctypes.c_int64, ctypes.c_void_p, ctypes.c_void_p]
    function.restype = None
    return function


def _native_digamma(z: torch.Tensor) -> torch.Tensor:
    z = z.contiguous()
    out = torch.empty_like(z)
    _kernel()(z.numel(), z.data_ptr(), out.data_ptr())
    return out


def _agrees() -> bool:
    """Whether the C digamma gives torch's values (to float32 round-off) from 1e-6 to 1e8."""
    z = torch.logspace(-6, 8, 301, dtype=torch.float64)
    exact = torch.digamma(z)
    got = _native_digamma(z.float()).double()
    return bool(((got - exact).abs() <= 2e-6 * exact.abs().clamp_min(1.0)).all())


def native_available() -> bool:
    """Whether the C digamma is built, loaded and checked in this process."""
    return native.available("special", lambda: _kernel() is not None and _agrees())


class _LgammaPositive(torch.autograd.Function):
    """``lgamma(z)`` (torch's) with the C ``digamma`` in its backward."""

    @staticmethod
    def forward(ctx, z):
        ctx.save_for_backward(z)
        return torch.lgamma(z)

    @staticmethod
    def backward(ctx, grad):
        (z,) = ctx.saved_tensors
        return grad * _native_digamma(z)


def lgamma_positive(z: torch.Tensor) -> torch.Tensor:
    """``torch.lgamma(z)`` for ``z > 0``: the same values; on the CPU in float32 its gradient by
    the C ``digamma`` (see the module's docstring)."""
    if z.requires_grad and native.fits(z) and native_available():
        return _LgammaPositive.apply(z)
    return torch.lgamma(z)
