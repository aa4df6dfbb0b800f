"""SCVI.train(data_on_device=...): minibatches gathered on the device train the same model."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from snakevi.data import simulate
from snakevi.data.device_loader import DeviceAnnDataLoader
from snakevi.model import SCVI

TRAIN = {"max_epochs": 3, "batch_size": 50, "enable_progress_bar": False, "check_val_every_n_epoch": 1,
         "accelerator": "cpu", "seed": 3}


@pytest.fixture()
def adata():
    ad = simulate(n_cells=260, n_genes=40, n_batches=2, n_groups=3, seed=4)
    SCVI.setup_anndata(ad, batch_key="batch", labels_key="label")
    return ad


def _train(adata, **kwargs):
    model = SCVI(adata, n_hidden=16, n_latent=3, seed=3)
    model.train(**TRAIN, **kwargs)
    return model


@pytest.fixture()
def device_passes(monkeypatch):
    """The DeviceAnnDataLoaders iterated so far (one entry per pass)."""
    passes = []
    original = DeviceAnnDataLoader.__iter__

    def spy(self):
        passes.append(self)
        return original(self)

    monkeypatch.setattr(DeviceAnnDataLoader, "__iter__", spy)
    return passes


def test_device_loader_trains_the_same_model_as_the_host_loader(adata, device_passes):
    host = _train(adata, data_on_device=False)
    assert device_passes == []
    dev = _train(adata, data_on_device=True)
    # 3 epochs of training and validation, both loaders over one device copy.
    assert len(device_passes) == 6 and len({id(p.data) for p in device_passes}) == 1
    pd.testing.assert_frame_equal(dev.history, host.history, check_exact=True)
    for (name, a), (_, b) in zip(host.module.state_dict().items(), dev.module.state_dict().items()):
        assert torch.equal(a, b), name
    np.testing.assert_array_equal(dev.train_indices, host.train_indices)


def test_auto_on_the_cpu_is_the_host_loader(adata, device_passes):
    _train(adata)  # default: "auto", which means CUDA only
    assert device_passes == []


def test_data_on_device_must_be_auto_or_a_bool(adata):
    model = SCVI(adata, n_hidden=16, n_latent=3)
    with pytest.raises(ValueError, match="data_on_device='gpu'"):
        model.train(**TRAIN, data_on_device="gpu")
