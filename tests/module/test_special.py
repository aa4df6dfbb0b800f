"""lgamma_positive: torch's lgamma with the C digamma (snakevi/module/_native/special.c) in its backward."""

from __future__ import annotations

import platform
import shutil

import pytest
import torch

from snakevi.module import native, special

HAS_COMPILER = shutil.which("cc") is not None or shutil.which("gcc") is not None
needs_compiler = pytest.mark.skipif(not HAS_COMPILER, reason="no C compiler on this machine: the kernel cannot be built")


@needs_compiler
def test_the_kernel_is_built_and_checked_on_a_machine_with_a_compiler():
    assert special.native_available()


@needs_compiler
@pytest.mark.parametrize("low, high", [(1e-6, 1e-2), (1e-2, 1.0), (1.0, 6.0), (6.0, 1e3), (1e3, 1e8)])
def test_digamma_is_as_accurate_as_torchs(low, high):
    gen = torch.Generator().manual_seed(0)
    z = torch.exp(torch.empty(20_000, dtype=torch.float64).uniform_(torch.log(torch.tensor(low)).item(),
                                                                     torch.log(torch.tensor(high)).item(),
                                                                     generator=gen)).float()
    exact = torch.digamma(z.double())
    scale = exact.abs().clamp_min(1.0)
    native_error = ((special._native_digamma(z).double() - exact).abs() / scale).max()
    torch_error = ((torch.digamma(z).double() - exact).abs() / scale).max()
    assert native_error <= max(1.5 * torch_error, 3e-7), (native_error, torch_error)


@needs_compiler
def test_not_positive_gives_nan():
    out = special._native_digamma(torch.tensor([0.0, -1.5, 2.0]))
    assert torch.isnan(out[:2]).all() and torch.isfinite(out[2])


@needs_compiler
def test_lgamma_positive_has_torchs_values_and_the_native_gradient():
    z = (torch.rand(5_000, generator=torch.Generator().manual_seed(1)) * 60 + 1e-3).requires_grad_()
    value = special.lgamma_positive(z)
    assert type(value.grad_fn).__name__ == "_LgammaPositiveBackward"
    assert torch.equal(value.detach(), torch.lgamma(z.detach()))
    weight = torch.rand(5_000)
    (value * weight).sum().backward()
    exact = weight.double() * torch.digamma(z.detach().double())
    assert torch.allclose(z.grad.double(), exact, rtol=2e-6, atol=2e-6)


@needs_compiler
def test_torch_runs_where_the_kernel_does_not_apply(monkeypatch):
    z = torch.rand(10, dtype=torch.float64).requires_grad_()
    assert type(special.lgamma_positive(z).grad_fn).__name__ == "LgammaBackward0"  # float64
    assert special.lgamma_positive(z.detach().float()).grad_fn is None  # no gradient wanted
    threads = torch.get_num_threads()
    torch.set_num_threads(native.MAX_TORCH_THREADS + 1)
    try:
        assert type(special.lgamma_positive(z.float()).grad_fn).__name__ == "LgammaBackward0"
    finally:
        torch.set_num_threads(threads)
    monkeypatch.setenv(native.ENV_SWITCH, "0")
    assert type(special.lgamma_positive(z.float()).grad_fn).__name__ == "LgammaBackward0"


@needs_compiler
def test_a_kernel_that_disagrees_is_not_used(monkeypatch, caplog):
    monkeypatch.setattr(native, "_checked", {})
    monkeypatch.setattr(special, "_agrees", lambda: False)
    with caplog.at_level("WARNING", logger=native.__name__):
        assert not special.native_available()
    assert "disagrees" in caplog.text
    z = torch.rand(10).requires_grad_()
    assert type(special.lgamma_positive(z).grad_fn).__name__ == "LgammaBackward0"


@pytest.mark.skipif(not (HAS_COMPILER and platform.machine() == "x86_64" and platform.libc_ver()[0] == "glibc"),
                    reason="the SIMD math functions (libmvec) are glibc's on x86-64")
def test_the_loop_is_vectorised():
    assert native.load("special") is not None
    assert b"_ZGV" in native.library_path("special").read_bytes()
