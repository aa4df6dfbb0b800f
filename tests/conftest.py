"""Shared fixtures: tiny simulated data for unit tests, the real datasets for end-to-end runs."""

from __future__ import annotations

from pathlib import Path

import pytest

#: ``../shared/data`` beside the repository root (see DEVELOPERS.md / shared/data/README.md).
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def shared_dataset(name: str) -> Path:
    """Path of a dataset in ../shared/data, skipping the test when the folder is absent."""
    path = SHARED_DATA / name
    if not SHARED_DATA.is_dir():
        pytest.skip(f"{SHARED_DATA} is absent (a user's machine without the shared datasets)")
    if not path.is_file():
        pytest.fail(f"{path} is missing although {SHARED_DATA} exists; see shared/data/README.md")
    return path


@pytest.fixture(scope="session")
def kang_path() -> Path:
    return shared_dataset("kang_pbmc_ctrl_8donors.h5ad")


@pytest.fixture(scope="session")
def cellbench_path() -> Path:
    return shared_dataset("cellbench_lung_celseq2_dropseq.h5ad")


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """Run tests with one intra-op thread.

    The test models are tiny: a second thread only adds synchronisation, and on a busy 2-core
    machine OpenMP spin-waiting made them ~10x slower. Results do not depend on it.
    """
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
