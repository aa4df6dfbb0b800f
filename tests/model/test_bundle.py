"""Model bundles carry a SHA-256 of their weights: a changed byte is refused, on purpose it loads."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from tamper import flip_a_tensor_byte

from snakevi._constants import MODEL_FORMAT_VERSION
from snakevi.data import simulate
from snakevi.model import SCANVI, SCVI, ModelFileError
from snakevi.model.bundle import read_bundle


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A trained tiny SCVI saved to ``<tmp>/m``, and the AnnData it was trained on."""
    adata = simulate(n_cells=120, n_genes=30, n_batches=2, n_groups=2, seed=4)
    SCVI.setup_anndata(adata, batch_key="batch")
    model = SCVI(adata, n_hidden=16, n_latent=4)
    model.train(max_epochs=2, batch_size=64, enable_progress_bar=False)
    path = tmp_path_factory.mktemp("bundle") / "m"
    model.save(path)
    return path, adata, model.get_latent_representation()


def copy_bundle(src, dst):
    dst.mkdir()
    for name in ("model.pt", "model.json"):
        (dst / name).write_bytes((src / name).read_bytes())
    return dst


def test_the_bundle_records_the_sha256_of_the_weights_it_wrote(saved):
    import hashlib

    path, _, _ = saved
    meta = json.loads((path / "model.json").read_text())
    assert meta["format_version"] == MODEL_FORMAT_VERSION == 2
    assert meta["sha256"] == {"model.pt": hashlib.sha256((path / "model.pt").read_bytes()).hexdigest()}


def test_an_untouched_bundle_loads_and_gives_the_same_latent(saved):
    path, adata, latent = saved
    np.testing.assert_array_equal(SCVI.load(path, adata).get_latent_representation(), latent)


def test_one_changed_byte_in_the_weights_is_refused_naming_the_file(saved, tmp_path):
    path, adata, latent = saved
    bundle = copy_bundle(path, tmp_path / "m")
    expected = json.loads((bundle / "model.json").read_text())["sha256"]["model.pt"]
    flip_a_tensor_byte(bundle / "model.pt")
    with pytest.raises(ModelFileError) as info:
        SCVI.load(bundle, adata)
    message = str(info.value)
    assert str(bundle / "model.pt") in message and expected in message
    assert "verify=False" in message and "save the model again" in message
    with pytest.raises(ModelFileError, match="does not match the SHA-256"):
        read_bundle(bundle)
    # Weights edited on purpose: verify=False loads them, one tensor changed.
    edited = SCVI.load(bundle, adata, verify=False).module.state_dict()
    original = SCVI.load(path, adata).module.state_dict()
    assert sum(not torch.equal(edited[k], original[k]) for k in original) == 1


def test_a_bundle_of_format_version_1_without_a_digest_still_loads(saved, tmp_path):
    path, adata, latent = saved
    bundle = copy_bundle(path, tmp_path / "m")
    meta = json.loads((bundle / "model.json").read_text())
    del meta["sha256"]
    meta["format_version"] = 1
    (bundle / "model.json").write_text(json.dumps(meta))
    np.testing.assert_array_equal(SCVI.load(bundle, adata).get_latent_representation(), latent)


def test_a_bundle_of_format_version_2_without_its_digest_is_refused(saved, tmp_path):
    path, adata, _ = saved
    bundle = copy_bundle(path, tmp_path / "m")
    meta = json.loads((bundle / "model.json").read_text())
    del meta["sha256"]
    (bundle / "model.json").write_text(json.dumps(meta))
    with pytest.raises(ModelFileError, match=r"model.json has no SHA-256 for model.pt"):
        SCVI.load(bundle, adata)
    SCVI.load(bundle, adata, verify=False)


def test_scanvi_load_checks_the_digest_too(tmp_path):
    adata = simulate(n_cells=60, n_genes=20, n_batches=2, n_groups=2, seed=2)
    adata.obs["lab"] = adata.obs["label"].cat.add_categories("Unknown")
    adata.obs.loc[adata.obs_names[::3], "lab"] = "Unknown"
    SCANVI.setup_anndata(adata, labels_key="lab", unlabeled_category="Unknown", batch_key="batch")
    SCANVI(adata, n_hidden=8, n_latent=2).save(tmp_path / "m")
    flip_a_tensor_byte(tmp_path / "m" / "model.pt")
    with pytest.raises(ModelFileError, match="does not match the SHA-256"):
        SCANVI.load(tmp_path / "m", adata)
    assert SCANVI.load(tmp_path / "m", adata, verify=False).module is not None
