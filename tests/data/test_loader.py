"""AnnDataLoader: tensor minibatches, epoch-seeded shuffling, every cell once per epoch."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from snakevi.data import AnnDataLoader, CellData, setup_anndata


@pytest.fixture()
def data(new_adata):
    adata = new_adata(n_obs=23, fmt="csr")
    setup_anndata(adata, batch_key="batch", labels_key="cell_type", continuous_covariate_keys=["age"])
    return CellData.from_anndata(adata)


def _epoch_cells(loader) -> list[int]:
    """Cell positions a pass visits, recovered from the 'age' covariate (unique per cell)."""
    ages = np.linspace(20.0, 60.0, 23).astype(np.float32)
    out = []
    for batch in loader:
        out += [int(np.argmin(np.abs(ages - a))) for a in batch["extra_continuous_covs"][:, 0].numpy()]
    return out


def test_batches_are_tensors_with_contract_dtypes(data):
    batches = list(AnnDataLoader(data, batch_size=10))
    assert [b["X"].shape[0] for b in batches] == [10, 10, 3]
    b = batches[0]
    assert set(b) == {"X", "batch", "labels", "extra_continuous_covs", "x_log_factorial"}
    assert b["X"].dtype == torch.float32 and b["X"].shape == (10, 5)
    assert b["batch"].dtype == torch.int64 and b["batch"].shape == (10, 1)
    assert b["labels"].dtype == torch.int64 and b["extra_continuous_covs"].dtype == torch.float32
    assert b["x_log_factorial"].dtype == torch.float32 and b["x_log_factorial"].shape == (10, 1)


@pytest.mark.parametrize("drop_last, n_batches, sizes", [(False, 3, [10, 10, 3]), (True, 2, [10, 10])])
def test_len_and_drop_last(data, drop_last, n_batches, sizes):
    loader = AnnDataLoader(data, batch_size=10, drop_last=drop_last)
    assert len(loader) == n_batches
    assert [b["X"].shape[0] for b in loader] == sizes


def test_unshuffled_order_is_the_index_order(data):
    idx = [5, 2, 19, 0]
    loader = AnnDataLoader(data, indices=idx, batch_size=3)
    assert _epoch_cells(loader) == idx
    first = next(iter(loader))
    np.testing.assert_array_equal(first["X"].numpy(), data.gather(idx[:3])["X"])


def test_shuffle_visits_every_cell_once_per_epoch(data):
    loader = AnnDataLoader(data, batch_size=4, shuffle=True, seed=3)
    for epoch in range(3):
        loader.set_epoch(epoch)
        assert sorted(_epoch_cells(loader)) == list(range(23))


def test_shuffle_order_depends_only_on_seed_and_epoch(data):
    a = AnnDataLoader(data, batch_size=4, shuffle=True, seed=3)
    orders = []
    for epoch in range(3):
        a.set_epoch(epoch)
        orders.append(_epoch_cells(a))
    assert orders[0] != orders[1] != orders[2]
    # A fresh loader jumping straight to epoch 2 (a resumed run) sees the same order.
    b = AnnDataLoader(data, batch_size=4, shuffle=True, seed=3)
    b.set_epoch(2)
    assert _epoch_cells(b) == orders[2]
    assert _epoch_cells(b) == orders[2]  # re-iterating the same epoch repeats it
    expected = np.random.default_rng([3, 2]).permutation(23).tolist()
    assert orders[2] == expected
    c = AnnDataLoader(data, batch_size=4, shuffle=True, seed=4)
    c.set_epoch(2)
    assert _epoch_cells(c) != orders[2]


def test_accepts_registered_anndata(new_adata):
    adata = new_adata()
    setup_anndata(adata)
    assert len(AnnDataLoader(adata, batch_size=5)) == 3


def test_bad_arguments(data):
    with pytest.raises(ValueError, match="batch_size"):
        AnnDataLoader(data, batch_size=0)
    with pytest.raises(IndexError, match=r"\[0, 23\)"):
        AnnDataLoader(data, indices=[0, 23])


def test_device_argument_moves_tensors(data):
    batch = next(iter(AnnDataLoader(data, batch_size=4, device="cpu")))
    assert batch["X"].device.type == "cpu"


def test_importing_snakevi_data_does_not_import_torch():
    code = "import sys, snakevi.data; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
