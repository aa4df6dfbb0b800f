"""prepare: streamed CSR arrays, seeded split and loader spec; memory-mapped reload."""

from __future__ import annotations

import json

import anndata
import numpy as np
import pytest

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
