"""Tiny hand-made AnnData objects for the data tests."""

from __future__ import annotations

import anndata
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp


def tiny_counts(n_obs: int = 12, n_vars: int = 5, seed: int = 0) -> np.ndarray:
    """Integer counts (float32) with no all-zero cell."""
    x = np.random.default_rng(seed).poisson(2.0, size=(n_obs, n_vars)).astype(np.float32)
    x[:, 0] += 1  # every cell has at least one count
    return x


def make_adata(x: np.ndarray | None = None, fmt: str = "dense", n_obs: int = 12, n_vars: int = 5) -> anndata.AnnData:
    """AnnData with obs 'batch' (b0/b1/b2), 'cell_type' (t0/t1), 'site', 'age', 'sf'."""
    x = tiny_counts(n_obs, n_vars) if x is None else x
    n_obs, n_vars = x.shape
    X = {"dense": lambda a: a, "csr": sp.csr_matrix, "csc": sp.csc_matrix}[fmt](x.copy())
    obs = pd.DataFrame(
        {
            "batch": pd.Categorical([f"b{i % 3}" for i in range(n_obs)]),
            "cell_type": [f"t{i % 2}" for i in range(n_obs)],
            "site": pd.Categorical([("s1", "s0")[i % 2] for i in range(n_obs)], categories=["s1", "s0"]),
            "age": np.linspace(20.0, 60.0, n_obs),
            "sf": np.linspace(0.5, 2.0, n_obs),
        },
        index=[f"c{i}" for i in range(n_obs)],
    )
    var = pd.DataFrame(index=[f"g{j}" for j in range(n_vars)])
    return anndata.AnnData(X=X, obs=obs, var=var)


@pytest.fixture()
def adata() -> anndata.AnnData:
    return make_adata()


@pytest.fixture()
def new_adata():
    """The ``make_adata`` factory, for tests that need their own matrix or format."""
    return make_adata
