"""setup_anndata's registry: layout, storage on the AnnData, JSON and h5ad round trips, transfer."""

from __future__ import annotations

import json

import anndata
import numpy as np
import pandas as pd
import pytest

from snakevi._constants import ADATA_UNS_REGISTRY_KEY, REGISTRY_FORMAT_VERSION
from snakevi.data import (
    RegistrationError,
    get_registry,
    registry_from_json,
    registry_to_json,
    setup_anndata,
    transfer_setup,
)

FULL = dict(
    batch_key="batch",
    labels_key="cell_type",
    size_factor_key="sf",
    categorical_covariate_keys=["site", "batch"],
    continuous_covariate_keys=["age"],
)


def test_registry_layout(adata):
    reg = setup_anndata(adata, **FULL)
    assert reg["format_version"] == REGISTRY_FORMAT_VERSION
    assert reg["model_name"] == "SCVI" and reg["setup_method_name"] == "setup_anndata"
    assert reg["setup_args"]["categorical_covariate_keys"] == ["site", "batch"]
    f = reg["fields"]
    assert f["X"] == {
        "attr_name": "X", "attr_key": None, "n_obs": 12, "n_vars": 5,
        "column_names": ["g0", "g1", "g2", "g3", "g4"],
    }
    assert f["batch"] == {"original_key": "batch", "categorical_mapping": ["b0", "b1", "b2"]}
    assert f["labels"]["categorical_mapping"] == ["t0", "t1"]
    assert f["size_factor"] == {"original_key": "sf"}
    # An existing categorical keeps its own category order (s1 before s0), as in pandas/scvi-tools.
    assert f["extra_categorical_covs"] == {
        "field_keys": ["site", "batch"],
        "mappings": {"site": ["s1", "s0"], "batch": ["b0", "b1", "b2"]},
        "n_cats_per_key": [2, 3],
    }
    assert f["extra_continuous_covs"] == {"columns": ["age"]}
    assert reg["summary"] == {
        "n_obs": 12, "n_vars": 5, "n_batch": 3, "n_labels": 2, "n_cats_per_cov": [2, 3],
        "n_extra_continuous_covs": 1, "has_size_factor": True,
    }


def test_validation_summary_counts(new_adata):
    x = np.zeros((4, 3), dtype=np.float32)
    x[:, 0] = [1, 2, 3, 7]
    x[1, 1] = 5
    reg = setup_anndata(new_adata(x, fmt="csc"))
    assert reg["validation"] == {
        "storage_format": "csc", "dtype": "float32", "total_counts": 18.0,
        "n_cells_zero_counts": 0, "n_genes_zero_counts": 1, "max_count": 7.0,
        "fraction_nonzero": 5 / 12,
    }


def test_no_keys_gives_single_zero_category(adata):
    reg = setup_anndata(adata)
    assert reg["fields"]["batch"] == {"original_key": None, "categorical_mapping": [0]}
    assert reg["summary"]["n_batch"] == 1 and reg["summary"]["n_labels"] == 1
    assert reg["summary"]["has_size_factor"] is False


def test_integer_categories_keep_their_values(adata):
    adata.obs["plate"] = np.arange(adata.n_obs) % 2 + 10
    reg = setup_anndata(adata, batch_key="plate")
    assert reg["fields"]["batch"]["categorical_mapping"] == [10, 11]


def test_registry_is_stored_as_json_string_and_obs_untouched(adata):
    cols = list(adata.obs.columns)
    reg = setup_anndata(adata, **FULL)
    raw = adata.uns[ADATA_UNS_REGISTRY_KEY]
    assert isinstance(raw, str) and json.loads(raw) == reg
    assert get_registry(adata) == reg
    assert list(adata.obs.columns) == cols


def test_json_file_round_trip(adata, tmp_path):
    reg = setup_anndata(adata, **FULL)
    path = tmp_path / "registry.json"
    registry_to_json(reg, path)
    assert registry_from_json(path) == reg
    assert [p.name for p in tmp_path.iterdir()] == ["registry.json"]  # no temp file left behind


def test_h5ad_round_trip(adata, tmp_path):
    reg = setup_anndata(adata, **FULL)
    adata.write_h5ad(tmp_path / "a.h5ad")
    back = anndata.read_h5ad(tmp_path / "a.h5ad")
    assert get_registry(back) == reg


def test_format_version_is_checked(adata, tmp_path):
    reg = setup_anndata(adata)
    reg["format_version"] = REGISTRY_FORMAT_VERSION + 1
    path = tmp_path / "r.json"
    path.write_text(json.dumps(reg))
    with pytest.raises(RegistrationError, match=r"format_version 2.*setup_anndata"):
        registry_from_json(path)
    with pytest.raises(RegistrationError, match="format_version"):
        registry_to_json(reg, tmp_path / "s.json")


def test_unregistered_anndata_says_call_setup_anndata(adata):
    with pytest.raises(RegistrationError, match="setup_anndata"):
        get_registry(adata)


# ---- transfer ---------------------------------------------------------------------------
def test_transfer_keeps_mappings_and_counts_new_cells(adata):
    reg = setup_anndata(adata, **FULL)
    query = adata[[0, 3, 6]].copy()  # only batch b0
    query.obs["batch"] = query.obs["batch"].cat.remove_unused_categories()
    new = transfer_setup(query, reg)
    assert new["fields"]["batch"]["categorical_mapping"] == ["b0", "b1", "b2"]
    assert new["summary"]["n_obs"] == 3 and new["summary"]["n_batch"] == 3
    assert get_registry(query) == new


def test_transfer_refuses_unseen_categories(adata):
    reg = setup_anndata(adata, batch_key="batch", labels_key="cell_type")
    query = adata.copy()
    query.obs["batch"] = query.obs["batch"].cat.rename_categories({"b2": "b_new"})
    with pytest.raises(RegistrationError, match=r"'batch'.*'b_new'.*extend_categories"):
        transfer_setup(query, reg)
    new = transfer_setup(query, reg, extend_categories=True)
    assert new["fields"]["batch"]["categorical_mapping"] == ["b0", "b1", "b2", "b_new"]
    assert new["summary"]["n_batch"] == 4


def test_transfer_refuses_other_genes(adata, new_adata):
    reg = setup_anndata(adata)
    other = new_adata(n_vars=6)
    other.var_names = ["g0", "g1", "g2", "x9", "g4", "x8"]
    with pytest.raises(RegistrationError, match=r"1 of the model's 5 genes are missing.*'g3'.*2 genes.*'x9'"):
        transfer_setup(other, reg)


def test_transfer_refuses_reordered_genes(adata):
    reg = setup_anndata(adata)
    other = adata[:, ::-1].copy()
    with pytest.raises(RegistrationError, match="different order"):
        transfer_setup(other, reg)


def test_transfer_validates_counts(adata):
    reg = setup_anndata(adata, batch_key="batch")
    query = adata.copy()
    query.X[0, 0] = 0.5
    with pytest.raises(RegistrationError, match="not an integer"):
        transfer_setup(query, reg)


def test_registry_is_json_with_numpy_category_values(adata):
    adata.obs["flag"] = pd.Categorical(np.arange(adata.n_obs) % 2 == 0)
    reg = setup_anndata(adata, labels_key="flag")
    assert json.loads(json.dumps(reg))["fields"]["labels"]["categorical_mapping"] == [False, True]
