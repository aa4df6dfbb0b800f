"""The ZINB zero case in C (snakevi.module.native) against its torch implementation, and the
build's fallbacks: no compiler, an unwritable cache, SNAKEVI_NATIVE=0, a disagreeing kernel."""

from __future__ import annotations

import platform
import shutil

import pytest
import torch

from snakevi.module import native
from snakevi.module import zinb_zero_case as zc

HAS_COMPILER = shutil.which("cc") is not None or shutil.which("gcc") is not None
needs_compiler = pytest.mark.skipif(not HAS_COMPILER, reason="no C compiler on this machine: the kernel cannot be built")


def _inputs(n, g, seed=0, mu_scale=20.0, pi_scale=4.0):
    gen = torch.Generator().manual_seed(seed)
    mu = torch.rand(n, g, generator=gen) * mu_scale + 1e-6
    theta = torch.rand(g, generator=gen) * 10 + 1e-3
    pi = torch.randn(n, g, generator=gen) * pi_scale
    weight = torch.rand(n, generator=gen) + 0.5  # each cell's incoming gradient differs
    return mu, theta, pi, weight


def _value_and_gradients(function, mu, theta, pi, weight):
    inputs = [t.clone().requires_grad_() for t in (mu, theta, pi)]
    value = function.apply(*inputs, 1e-8)
    (value * weight).sum().backward()
    return [value.detach(), *(t.grad for t in inputs)]


@pytest.fixture
def fresh_build(tmp_path, monkeypatch):
    """A process state as if nothing had been built or checked yet, with its own cache folder."""
    monkeypatch.setenv(native.ENV_CACHE, str(tmp_path / "cache"))
    monkeypatch.delenv(native.ENV_SWITCH, raising=False)
    monkeypatch.setattr(native, "_loaded", {})
    monkeypatch.setattr(native, "_checked", {})
    zc._kernels.cache_clear()
    yield tmp_path / "cache"
    zc._kernels.cache_clear()


@needs_compiler
def test_the_kernel_is_built_on_a_machine_with_a_compiler():
    assert zc.native_available(), "the C kernel should build and agree with torch where a compiler exists"


@needs_compiler
@pytest.mark.parametrize("shape", [(128, 2000), (7, 1003), (1, 5)], ids=["minibatch", "odd-genes", "one-cell"])
@pytest.mark.parametrize("scales", [(20.0, 4.0), (1e-4, 40.0), (1e5, 0.1)], ids=["usual", "tiny-mu-big-pi", "huge-mu"])
@pytest.mark.parametrize("uniform", [True, False], ids=["mean-over-cells", "per-cell-weights"])
def test_value_and_gradients_equal_the_torch_implementation(shape, scales, uniform):
    """scVI's loss averages over cells (theta's gradient from the kernel's sum); other weights
    take theta's gradient from the torch formula."""
    mu, theta, pi, weight = _inputs(*shape, mu_scale=scales[0], pi_scale=scales[1])
    if uniform:
        weight = torch.full_like(weight, 1 / len(weight))
    exact = _value_and_gradients(zc.ZinbZeroCaseSum, *(t.double() for t in (mu, theta, pi, weight)))
    torch32 = _value_and_gradients(zc.ZinbZeroCaseSum, mu, theta, pi, weight)
    got = _value_and_gradients(zc.NativeZinbZeroCaseSum, mu, theta, pi, weight)
    # A cell's value is a sum of large terms that cancel where |pi| is large: float32 knows it to
    # a few ulps of the terms' magnitudes, whichever implementation sums them.
    p = theta.double() * torch.log((theta.double() + 1e-8) / (theta.double() + mu.double() + 1e-8)) - pi.double()
    magnitude = (torch.nn.functional.softplus(p) + torch.nn.functional.softplus(-pi.double())).sum(-1)
    # The gradients' terms cancel too (theta's where mu is tiny): up to an ulp of 1 per entry.
    floors = [1e-6 * magnitude + 1e-6, *(1e-5 * a.abs().max() + 1e-6 for a in exact[1:])]
    for name, a, b, c, floor in zip(("value", "mu", "theta", "pi"), exact, torch32, got, floors):
        native_error, torch_error = (c.double() - a).abs(), (b.double() - a).abs()
        # no worse than torch's own float32 (over the tensor: where each one's rounding falls differs)
        assert (native_error <= torch.maximum(2 * torch_error.max(), floor)).all(), (name, native_error.max(),
                                                                                      torch_error.max())


@needs_compiler
def test_reruns_are_bit_identical_and_the_value_alone_matches():
    mu, theta, pi, weight = _inputs(64, 777)
    first = _value_and_gradients(zc.NativeZinbZeroCaseSum, mu, theta, pi, weight)
    second = _value_and_gradients(zc.NativeZinbZeroCaseSum, mu, theta, pi, weight)
    assert all(torch.equal(a, b) for a, b in zip(first, second))
    with torch.no_grad():  # the kernel without gradients
        alone = zc.NativeZinbZeroCaseSum.apply(mu, theta, pi, 1e-8)
    assert torch.allclose(alone, first[0], rtol=1e-6, atol=0)


@needs_compiler
def test_a_nan_stays_a_nan():
    mu, theta, pi, _ = _inputs(4, 40)
    mu[1, 3] = float("nan")
    pi[2, 7] = float("nan")
    value = zc.NativeZinbZeroCaseSum.apply(mu, theta, pi, 1e-8)
    assert torch.isnan(value[1]) and torch.isnan(value[2])
    assert torch.isfinite(value[[0, 3]]).all()


@needs_compiler
def test_the_dispatcher_uses_the_kernel_only_where_it_applies(monkeypatch):
    used = []
    monkeypatch.setattr(zc.NativeZinbZeroCaseSum, "apply", lambda *a: used.append("native") or zc.ZinbZeroCaseSum.apply(*a))
    mu, theta, pi, _ = _inputs(3, 10)
    zc.zinb_zero_case_sum(mu, theta, pi, 1e-8)
    assert used == ["native"]
    zc.zinb_zero_case_sum(mu.double(), theta.double(), pi.double(), 1e-8)  # float64
    zc.zinb_zero_case_sum(mu, theta.expand(3, 10), pi, 1e-8)  # theta per cell and gene
    zc.zinb_zero_case_sum(mu, theta, pi[:1], 1e-8)  # broadcast zero-inflation logits
    threads = torch.get_num_threads()
    torch.set_num_threads(native.MAX_TORCH_THREADS + 1)  # torch's threads outrun the one-thread kernel
    try:
        zc.zinb_zero_case_sum(mu, theta, pi, 1e-8)
    finally:
        torch.set_num_threads(threads)
    monkeypatch.setenv(native.ENV_SWITCH, "0")
    zc.zinb_zero_case_sum(mu, theta, pi, 1e-8)
    assert used == ["native"]


@needs_compiler
def test_a_fresh_build_lands_atomically_and_is_reused(fresh_build):
    assert native.load("zinb_zero_case") is not None
    built = list(fresh_build.iterdir())
    assert [p.name.startswith("zinb_zero_case-") and p.suffix == ".so" for p in built] == [True], built
    stamp = built[0].stat().st_mtime_ns
    native._loaded.clear()
    assert native.load("zinb_zero_case") is not None
    assert built[0].stat().st_mtime_ns == stamp, "the cached library should be reused, not rebuilt"


@needs_compiler
def test_the_library_name_follows_the_cpu_and_the_compiler(monkeypatch):
    here = native.library_path("zinb_zero_case")
    monkeypatch.setattr(native, "_cpu_identity", lambda: "model name : another CPU\nflags : sse2")
    assert native.library_path("zinb_zero_case") != here
    monkeypatch.undo()
    monkeypatch.setattr(native, "_flags", lambda: (["-O2", "-fPIC", "-shared"], ["-lm"]))
    assert native.library_path("zinb_zero_case") != here


def test_without_a_compiler_the_torch_implementation_trains(fresh_build, monkeypatch):
    monkeypatch.setenv("CC", str(fresh_build / "no-such-compiler"))
    assert native.load("zinb_zero_case") is None
    assert not zc.native_available()
    mu, theta, pi, weight = _inputs(5, 12)
    got = _value_and_gradients(type("Dispatch", (), {"apply": staticmethod(zc.zinb_zero_case_sum)}), mu, theta, pi,
                               weight)
    want = _value_and_gradients(zc.ZinbZeroCaseSum, mu, theta, pi, weight)
    assert all(torch.equal(a, b) for a, b in zip(got, want))


@needs_compiler
def test_a_failed_compile_or_an_unwritable_cache_falls_back(fresh_build, monkeypatch, tmp_path):
    monkeypatch.setattr(native, "_flags", lambda: (["-fPIC", "-shared", "--no-such-flag"], ["-lm"]))
    assert native.load("zinb_zero_case") is None
    assert not fresh_build.exists() or not any(fresh_build.iterdir()), "a failed build should leave no file"
    monkeypatch.undo()
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv(native.ENV_CACHE, str(blocker / "cache"))
    monkeypatch.setattr(native, "_loaded", {})
    assert native.load("zinb_zero_case") is None


@needs_compiler
def test_a_kernel_that_disagrees_with_torch_is_not_used(fresh_build, monkeypatch, caplog):
    monkeypatch.setattr(zc, "_native_agrees", lambda: False)
    with caplog.at_level("WARNING", logger=native.__name__):
        assert not zc.native_available()
    assert "disagrees" in caplog.text
    used = []
    monkeypatch.setattr(zc.NativeZinbZeroCaseSum, "apply", lambda *a: used.append(1))
    mu, theta, pi, _ = _inputs(3, 10)
    zc.zinb_zero_case_sum(mu, theta, pi, 1e-8)
    assert used == []


def test_switched_off_nothing_is_built(fresh_build, monkeypatch):
    monkeypatch.setenv(native.ENV_SWITCH, "0")
    assert native.load("zinb_zero_case") is None
    assert not fresh_build.exists()


@pytest.mark.skipif(not (HAS_COMPILER and platform.machine() == "x86_64" and platform.libc_ver()[0] == "glibc"),
                    reason="the SIMD math functions (libmvec) are glibc's on x86-64")
def test_the_loop_over_genes_is_vectorised():
    """gcc turns the kernel's loops into SIMD code with glibc's vector expf/logf: the reason it
    pays (a scalar loop is slower than torch's vectorised kernels)."""
    path = native.library_path("zinb_zero_case")
    assert native.load("zinb_zero_case") is not None and path.exists()
    assert b"_ZGV" in path.read_bytes(), "no vector math function is called: the loop was not vectorised"
