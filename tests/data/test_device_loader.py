"""DeviceCellData / DeviceAnnDataLoader: the same minibatches as CellData / AnnDataLoader, gathered by torch."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from snakevi.data import AnnDataLoader, CellData, setup_anndata
from snakevi.data.device_loader import (
    DeviceAnnDataLoader,
    DeviceCellData,
    device_dataloaders,
    device_nbytes,
    resolve_data_on_device,
)
from snakevi.data.prepared import load_prepared, write_prepared


def _random_csr(n_obs: int, n_vars: int, index_dtype, seed: int = 0) -> sp.csr_matrix:
    """Random counts with empty rows (every third cell) and unsorted column indices."""
    rng = np.random.default_rng(seed)
    dense = rng.poisson(0.7, size=(n_obs, n_vars)).astype(np.float32)
    dense[::3] = 0
    X = sp.csr_matrix(dense)
    order = [rng.permutation(np.arange(a, b)) for a, b in zip(X.indptr[:-1], X.indptr[1:])]
    perm = np.concatenate(order) if order else np.zeros(0, np.int64)
    out = sp.csr_matrix((X.data[perm], X.indices[perm], X.indptr), shape=X.shape)
    # Set after construction: scipy's constructor would narrow int64 indices that fit in int32.
    out.indices, out.indptr = out.indices.astype(index_dtype), out.indptr.astype(index_dtype)
    return out


def _celldata(X, n_obs: int, with_covs: bool = True) -> CellData:
    rng = np.random.default_rng(1)
    obs = {
        "batch": rng.integers(0, 3, size=(n_obs, 1)).astype(np.int64),
        "labels": rng.integers(0, 2, size=(n_obs, 1)).astype(np.int64),
    }
    if with_covs:
        obs["size_factor"] = rng.uniform(0.5, 2, size=(n_obs, 1)).astype(np.float32)
        obs["extra_categorical_covs"] = rng.integers(0, 4, size=(n_obs, 2)).astype(np.int64)
        obs["extra_continuous_covs"] = rng.normal(size=(n_obs, 3)).astype(np.float32)
    return CellData(X, obs, registry={"summary": {"n_vars": X.shape[1]}})


def _assert_same_batch(host: dict, dev: dict) -> None:
    assert list(dev) == list(host)
    for key, value in host.items():
        got = dev[key]
        assert isinstance(got, torch.Tensor), key
        expected = torch.as_tensor(value)
        assert got.dtype == expected.dtype and got.shape == expected.shape, key
        assert torch.equal(got, expected), key


@pytest.mark.parametrize("index_dtype", [np.int32, np.int64])
def test_gather_equals_celldata_gather_on_random_csr(index_dtype):
    X = _random_csr(40, 17, index_dtype)
    assert X.indices.dtype == index_dtype and X.indptr.dtype == index_dtype
    data = _celldata(X, 40)
    dev = DeviceCellData(data)
    assert dev.col_indices.dtype == (torch.int32 if index_dtype == np.int32 else torch.int64)
    rng = np.random.default_rng(2)
    cases = [
        np.arange(40),                 # everything, in order
        rng.permutation(40)[:13],      # shuffled subset, mixes empty and full rows
        np.array([7]),                 # a single row
        np.array([0, 3, 6, 9]),        # only empty rows: nothing to scatter
        np.array([5, 5, 2, -1]),       # repeats and a negative position
    ]
    for rows in cases:
        _assert_same_batch(data.gather(rows), dev.gather(rows))
        # Rows already on the device, with and without the host-computed value count.
        on_device = dev.rows_to_device(rows)
        _assert_same_batch(data.gather(rows), dev.gather(on_device, dev.nnz_of(rows)))
        _assert_same_batch(data.gather(rows), dev.gather(on_device))


def test_gather_sums_duplicate_entries_as_scipy():
    # Row 0 stores column 1 twice (2 + 3); toarray() sums them.
    X = sp.csr_matrix((np.array([2.0, 3.0, 1.0], np.float32), np.array([1, 1, 0]), np.array([0, 2, 3])), shape=(2, 3))
    data = _celldata(X, 2, with_covs=False)
    out = DeviceCellData(data).gather([0, 1])["X"]
    assert out.tolist() == [[0.0, 5.0, 0.0], [1.0, 0.0, 0.0]]
    _assert_same_batch(data.gather([0, 1]), DeviceCellData(data).gather([0, 1]))


def test_gather_dense_and_float64_input():
    rng = np.random.default_rng(3)
    dense = rng.poisson(1.0, size=(12, 6)).astype(np.float64)
    for X in (dense, sp.csr_matrix(dense)):
        data = _celldata(X, 12)
        dev = DeviceCellData(data)
        for rows in (np.arange(12), np.array([4]), np.array([11, 0, 5])):
            _assert_same_batch(data.gather(rows), dev.gather(rows))
    assert DeviceCellData(_celldata(dense, 12)).X.dtype == torch.float32


def test_gather_from_memory_mapped_prepared_folder(tmp_path, new_adata):
    adata = new_adata(n_obs=30, n_vars=7, fmt="csr")
    registry = setup_anndata(adata, batch_key="batch", labels_key="cell_type",
                             categorical_covariate_keys=["site"], continuous_covariate_keys=["age"])
    mem = CellData.from_anndata(adata)
    X = mem.X
    chunks = [X[:11], X[11:12], X[12:]]  # uneven row chunks, one of a single cell
    write_prepared(tmp_path / "prepared", chunks, mem.obs, registry)
    mapped = load_prepared(tmp_path / "prepared", registry)
    for arr in (mapped.X.data, mapped.X.indices, mapped.X.indptr):  # views of the files, not copies
        while not isinstance(arr, np.memmap):
            arr = arr.base
            assert arr is not None
    dev = DeviceCellData(mapped)
    for rows in (np.arange(30), np.array([29, 0, 12, 11])):
        _assert_same_batch(mapped.gather(rows), dev.gather(rows))
        np.testing.assert_array_equal(dev.gather(rows)["X"].numpy(), mem.gather(rows)["X"])


@pytest.fixture(params=["csr", "dense"])
def celldata(request, new_adata):
    adata = new_adata(n_obs=23, fmt=request.param)
    setup_anndata(adata, batch_key="batch", labels_key="cell_type", size_factor_key="sf",
                  categorical_covariate_keys=["site"], continuous_covariate_keys=["age"])
    return CellData.from_anndata(adata)


@pytest.mark.parametrize("shuffle", [False, True])
@pytest.mark.parametrize("drop_last", [False, True])
def test_loader_yields_the_same_batches_as_anndataloader(celldata, shuffle, drop_last):
    indices = np.array([3, 1, 4, 15, 9, 2, 6, 5, 22, 8, 7, 0, 18, 11, -2, 20])
    kwargs = {"indices": indices, "batch_size": 5, "shuffle": shuffle, "drop_last": drop_last, "seed": 7}
    host, dev = AnnDataLoader(celldata, **kwargs), DeviceAnnDataLoader(celldata, **kwargs)
    assert len(dev) == len(host) == (3 if drop_last else 4)
    for epoch in (0, 1, 5):
        host.set_epoch(epoch)
        dev.set_epoch(epoch)
        np.testing.assert_array_equal(dev.order(), host.order())
        host_batches, dev_batches = list(host), list(dev)
        assert len(dev_batches) == len(host_batches) == len(host)
        for h, d in zip(host_batches, dev_batches):
            _assert_same_batch({k: v.numpy() for k, v in h.items()}, d)
    host.set_epoch(0)
    dev.set_epoch(1)
    if shuffle:  # the epoch matters: a different order
        assert not np.array_equal(dev.order(), host.order())


def test_loader_defaults_to_every_cell_in_order(celldata):
    batches = list(DeviceAnnDataLoader(celldata, batch_size=10))
    assert [b["X"].shape[0] for b in batches] == [10, 10, 3]
    assert torch.equal(torch.cat([b["X"] for b in batches]), torch.as_tensor(celldata.gather(np.arange(23))["X"]))


def test_loaders_share_one_device_copy(celldata):
    train, val = device_dataloaders(celldata, np.arange(18), np.arange(18, 23), batch_size=4, seed=0,
                                    drop_last=False, device="cpu")
    assert train.data is val.data and train.shuffle and not val.shuffle
    assert [b["X"].shape[0] for b in val] == [4, 1]
    none_val = device_dataloaders(celldata, np.arange(23), np.zeros(0, np.int64), batch_size=4, seed=0,
                                  drop_last=False, device=None)[1]
    assert none_val is None


def test_loader_refuses_bad_arguments(celldata):
    shared = DeviceCellData(celldata, "cpu")
    with pytest.raises(ValueError, match="device="):
        DeviceAnnDataLoader(shared, device="meta")
    with pytest.raises(ValueError, match="batch_size"):
        DeviceAnnDataLoader(shared, batch_size=0)
    with pytest.raises(IndexError, match=r"\[0, 23\)"):
        DeviceAnnDataLoader(shared, indices=[0, 23])


def test_device_nbytes_counts_csr_and_dense():
    X = _random_csr(10, 4, np.int32)
    data = _celldata(X, 10, with_covs=False)
    # values + int32 indices, int64 indptr, batch and labels codes, float32 x_log_factorial
    assert device_nbytes(data) == X.nnz * 8 + 11 * 8 + 2 * 10 * 8 + 10 * 4
    dense = _celldata(np.zeros((10, 4)), 10, with_covs=False)
    assert device_nbytes(dense) == 10 * 4 * 4 + 2 * 10 * 8 + 10 * 4


def test_resolve_data_on_device_choices(celldata, monkeypatch):
    cpu = torch.device("cpu")
    assert resolve_data_on_device("auto", celldata, cpu) is False
    assert resolve_data_on_device(True, celldata, cpu) is True
    assert resolve_data_on_device(False, celldata, cpu) is False
    with pytest.raises(ValueError, match="data_on_device='yes'"):
        resolve_data_on_device("yes", celldata, cpu)
    # CUDA decisions read only the free memory, so a stand-in for mem_get_info exercises them.
    need = device_nbytes(celldata)
    cuda = torch.device("cuda", 0)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (4 * need, 10 * need))
    assert resolve_data_on_device("auto", celldata, cuda) is True
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (need + need // 2, 10 * need))
    with pytest.warns(UserWarning, match="gathered on the host"):
        assert resolve_data_on_device("auto", celldata, cuda) is False
    assert resolve_data_on_device(True, celldata, cuda) is True
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (need // 2, 10 * need))
    with pytest.raises(ValueError, match="does not fit"):
        resolve_data_on_device(True, celldata, cuda)
