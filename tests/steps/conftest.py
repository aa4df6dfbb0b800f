"""Tiny simulated datasets written as .h5ad, shared by the step tests."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_h5ad(tmp_path_factory) -> Path:
    """300 cells x 60 genes, 2 batches, 3 labels (CSR counts in X)."""
    from snakevi.data import simulate

    path = tmp_path_factory.mktemp("data") / "tiny.h5ad"
    simulate(n_cells=300, n_genes=60, n_batches=2, n_groups=3, seed=1).write_h5ad(path)
    return path


@pytest.fixture(scope="session")
def tiny_registered(tiny_h5ad, tmp_path_factory):
    """``(h5ad, registry_json, prepared_dir)`` of the tiny data (batch + labels, 50 HVGs)."""
    from snakevi.steps import prepare, register

    out = tmp_path_factory.mktemp("registered")
    register(tiny_h5ad, out / "registry.json", batch_key="batch", labels_key="label", n_top_genes=50)
    prepare(tiny_h5ad, out / "registry.json", out / "prepared", batch_size=64, seed=0)
    return tiny_h5ad, out / "registry.json", out / "prepared"
