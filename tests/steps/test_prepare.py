"""prepare: streamed CSR arrays, seeded split and loader spec; memory-mapped reload."""

from __future__ import annotations

import json
import warnings

import anndata
import numpy as np
import pytest
import scipy.sparse as sp

from snakevi.data import CellData, DataSplitter, registry_from_json, transfer_setup
from snakevi.data.prepared import load_prepared, read_loader_spec, read_split
from snakevi.steps import StepError, prepare


def _base(arr):
    while getattr(arr, "base", None) is not None and not isinstance(arr, np.memmap):
        arr = arr.base
    return arr


def test_prepared_arrays_equal_the_registered_data(tiny_registered):
    h5ad, registry_json, prepared = tiny_registered
    registry = registry_from_json(registry_json)
    data = load_prepared(prepared, registry)
    adata = anndata.read_h5ad(h5ad)[:, registry["fields"]["X"]["column_names"]].copy()
    transfer_setup(adata, registry)
    ref = CellData.from_anndata(adata, registry)
    assert abs(data.X - ref.X).max() == 0
    assert sorted(data.obs) == sorted(ref.obs)
    for key in ref.obs:
        np.testing.assert_array_equal(np.asarray(data.obs[key]), ref.obs[key])
    assert isinstance(_base(data.X.data), np.memmap)  # not copied into memory


def test_split_and_loader_spec_match_the_data_splitter(tiny_registered):
    _, registry_json, prepared = tiny_registered
    registry = registry_from_json(registry_json)
    spec = read_loader_spec(prepared)
    assert spec["loader"] == {"batch_size": 64, "shuffle": True, "drop_last": False, "seed": 0}
    train, val, test = read_split(prepared)
    ref = DataSplitter(load_prepared(prepared, registry), batch_size=64, seed=0)
    np.testing.assert_array_equal(train, ref.train_idx)
    np.testing.assert_array_equal(val, ref.val_idx)
    np.testing.assert_array_equal(test, ref.test_idx)
    assert spec["split_sizes"] == {"train": train.size, "validation": val.size, "test": test.size}


def test_streaming_in_small_chunks_gives_identical_files(tiny_registered, tmp_path, monkeypatch):
    from snakevi.data import prepared as prepared_module

    h5ad, registry_json, prepared = tiny_registered
    monkeypatch.setattr(prepared_module, "_NPY_BLOCK", 5)  # .npy files written 5 values at a time
    prepare(h5ad, registry_json, tmp_path / "p", batch_size=64, seed=0, chunk_rows=7)
    for name in ("X_data.npy", "X_indices.npy", "X_indptr.npy", "obs_batch.npy", "split_train.npy"):
        assert (tmp_path / "p" / name).read_bytes() == (prepared / name).read_bytes(), name


def test_batch_size_larger_than_training_set_is_accepted_and_trains(tiny_registered, tmp_path):
    # scvi-tools trains with one short minibatch per epoch; so does the workflow's train step.
    from snakevi.steps import train

    h5ad, registry_json, prepared = tiny_registered
    spec = prepare(h5ad, registry_json, tmp_path / "p", batch_size=1000)
    assert spec["loader"]["batch_size"] == 1000
    assert spec["split_sizes"] == read_loader_spec(prepared)["split_sizes"]
    model = train(tmp_path / "p", registry_json, tmp_path / "model", tmp_path / "history.csv",
                  model_params={"n_hidden": 8, "n_latent": 2}, train_params={"max_epochs": 2}, accelerator="cpu",
                  enable_progress_bar=False)
    assert len(model.history) == 2 and model.trainer.global_step == 2  # one step per epoch


def test_a_prepared_folder_is_refused_for_another_registry(tiny_registered, tmp_path):
    _, registry_json, prepared = tiny_registered
    registry = json.loads(registry_json.read_text())
    registry["setup_args"]["labels_key"] = "other"
    with pytest.raises(ValueError, match="another registry"):
        load_prepared(prepared, registry)


def test_float16_counts_are_prepared_as_float32_like_the_python_api(tiny_registered, tmp_path):
    # scipy.sparse holds no float16; the Python API (CellData) widens such counts to float32, and so must prepare.
    from snakevi.steps import register

    h5ad = tiny_registered[0]
    adata = anndata.read_h5ad(h5ad)
    half = adata.X.toarray().astype(np.float16)
    for name, X in (("half", half), ("single", sp.csr_matrix(half.astype(np.float32)))):
        adata.X = X
        adata.write_h5ad(tmp_path / f"{name}.h5ad")
        # The tiny data's counts go above 2048, where float16 rounds: registered with a warning.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "adata.X holds float16 counts", UserWarning)
            register(tmp_path / f"{name}.h5ad", tmp_path / f"{name}.json", batch_key="batch", n_top_genes=50)
        prepare(tmp_path / f"{name}.h5ad", tmp_path / f"{name}.json", tmp_path / name, batch_size=64, seed=0)
    for name in ("X_data.npy", "X_indices.npy", "X_indptr.npy", "obs_batch.npy", "split_train.npy"):
        assert (tmp_path / "half" / name).read_bytes() == (tmp_path / "single" / name).read_bytes(), name
    # The Python API trains on the same numbers.
    registry = registry_from_json(tmp_path / "half.json")
    adata.X = half
    adata = adata[:, registry["fields"]["X"]["column_names"]].copy()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "adata.X holds float16 counts", UserWarning)
        transfer_setup(adata, registry)
    prepared = load_prepared(tmp_path / "half", registry)
    assert abs(prepared.X - CellData.from_anndata(adata, registry).X).max() == 0


def test_float16_counts_above_2048_are_registered_with_a_warning(tiny_h5ad, tmp_path):
    from snakevi.steps import register

    adata = anndata.read_h5ad(tiny_h5ad)
    X = adata.X.toarray()
    X[0, 0] = 5000  # float16 holds 5000 exactly, but not 5001: such counts may have been rounded
    adata.X = X.astype(np.float16)
    adata.write_h5ad(tmp_path / "half.h5ad")
    with pytest.warns(UserWarning, match=r"adata.X holds float16 counts, which round counts above 2048 \(the largest is 5000\)"):
        register(tmp_path / "half.h5ad", tmp_path / "registry.json", batch_key="batch")


def test_sparse_float16_counts_are_refused_at_register_saying_how_to_widen_them(tiny_h5ad, tmp_path):
    # Written by another tool (anndata cannot: scipy refuses float16); anndata cannot read it back either.
    import shutil

    import h5py

    from snakevi.steps import register

    path = tmp_path / "half.h5ad"
    shutil.copy(tiny_h5ad, path)
    with h5py.File(path, "r+") as fh:
        data = fh["X/data"][:]
        del fh["X/data"]
        fh["X/data"] = data.astype(np.float16)
    with pytest.raises(StepError, match="stores X as a sparse matrix of float16 values.*astype"):
        register(path, tmp_path / "registry.json", batch_key="batch")
    assert not (tmp_path / "registry.json").exists()
