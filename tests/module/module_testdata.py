"""Tiny minibatches and VAEs shared by the module tests (imported, not a conftest)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from snakevi.module import VAE

N_CELLS, N_GENES, N_BATCH, N_LABELS = 24, 15, 3, 2
N_CATS_PER_COV = [3, 1]
N_CONT = 2


def assert_close(actual: torch.Tensor, expected: torch.Tensor, rtol: float = 1.3e-6, atol: float = 1e-5) -> None:
    """``torch.testing.assert_close`` for plain tensors, without its ~2-3 s first-call import
    of torch.distributed."""
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    if not torch.allclose(actual, expected, rtol=rtol, atol=atol):
        worst = (actual - expected).abs().max().item()
        raise AssertionError(f"tensors differ: max abs difference {worst:.3g} (rtol={rtol}, atol={atol})")


def make_tensors(
    n_cells: int = N_CELLS, *, covariates: bool = False, size_factor: bool = False, seed: int = 0
) -> dict[str, torch.Tensor]:
    """A minibatch dict shaped as the loaders yield it (no empty cells)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.poisson(torch.rand(n_cells, N_GENES, generator=g) * 6)
    x[:, 0] += 1  # every cell has counts, so log library sizes are finite
    tensors = {
        "X": x,
        "batch": torch.randint(0, N_BATCH, (n_cells, 1), generator=g),
        "labels": torch.randint(0, N_LABELS, (n_cells, 1), generator=g),
    }
    if covariates:
        tensors["extra_categorical_covs"] = torch.stack(
            [torch.randint(0, n, (n_cells,), generator=g) for n in N_CATS_PER_COV], dim=1
        )
        tensors["extra_continuous_covs"] = torch.randn(n_cells, N_CONT, generator=g)
    if size_factor:
        tensors["size_factor"] = torch.rand(n_cells, 1, generator=g) + 0.5
    return tensors


def library_priors(n_batch: int = N_BATCH) -> tuple[np.ndarray, np.ndarray]:
    """Per-batch log-library mean and variance, shape (1, n_batch)."""
    return np.full((1, n_batch), np.log(40.0)), np.full((1, n_batch), 0.3)


def make_vae(*, covariates: bool = False, **kwargs) -> VAE:
    """A small VAE matching :func:`make_tensors`."""
    params = dict(n_input=N_GENES, n_batch=N_BATCH, n_labels=N_LABELS, n_hidden=16, n_latent=4)
    if covariates:
        params.update(n_continuous_cov=N_CONT, n_cats_per_cov=N_CATS_PER_COV)
    params.update(kwargs)
    return VAE(**params)


@pytest.fixture
def one_thread():
    """Run a test with one intra-op thread, restoring the setting afterwards.

    These tensors are tiny, so threads buy nothing; on a busy 2-core machine the thread
    hand-offs made the tests ~10x slower.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
