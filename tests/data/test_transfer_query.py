"""transfer_setup for query data (reference mapping): category extension order and query labels."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from snakevi.data import RegistrationError, setup_anndata, transfer_setup
from snakevi.data.registry import registry_unlabeled_category


def _query(adata, batches, categories=None):
    q = adata.copy()
    q.obs["batch"] = pd.Categorical(batches, categories=categories)
    return q


def test_new_batches_are_appended_in_sorted_order_as_scvi_tools(adata):
    reg = setup_anndata(adata, batch_key="batch")
    n = adata.n_obs
    # The column's own category order (zz before aa) and a known batch (b1) do not matter:
    # scvi-tools appends np.unique(values) minus the known ones.
    q = _query(adata, [("zz", "b1", "aa")[i % 3] for i in range(n)], categories=["zz", "b1", "aa", "unused"])
    new = transfer_setup(q, reg, extend_categories=True)
    assert new["fields"]["batch"]["categorical_mapping"] == ["b0", "b1", "b2", "aa", "zz"]
    assert new["summary"]["n_batch"] == 5


def test_new_categorical_covariate_values_are_appended_sorted(adata):
    reg = setup_anndata(adata, batch_key="batch", categorical_covariate_keys=["site"])
    q = adata.copy()
    q.obs["site"] = pd.Categorical([("s9", "s0", "s5")[i % 3] for i in range(q.n_obs)])
    new = transfer_setup(q, reg, extend_categories=True)
    assert new["fields"]["extra_categorical_covs"]["mappings"]["site"] == ["s1", "s0", "s5", "s9"]
    assert new["summary"]["n_cats_per_cov"] == [4]


def test_query_labels_unknown_without_unlabeled_category_are_refused_by_name(adata):
    reg = setup_anndata(adata, batch_key="batch", labels_key="cell_type")
    q = adata.copy()
    q.obs["cell_type"] = ["t0", "t_new", "t1", "t_other"] * 3
    with pytest.raises(RegistrationError, match=r"6 cell\(s\) with 2 label\(s\).*'t_new', 't_other'.*no unlabeled"):
        transfer_setup(q, reg, extend_categories=True, allow_missing_labels=True)
    # Without allow_missing_labels, extend_categories extends labels too (scvi-tools' SCVI does).
    new = transfer_setup(q, reg, extend_categories=True)
    assert new["fields"]["labels"]["categorical_mapping"] == ["t0", "t1", "t_new", "t_other"]


def test_query_labels_unknown_become_the_unlabeled_category(adata):
    reg = setup_anndata(adata, batch_key="batch", labels_key="cell_type", unlabeled_category="Unknown")
    assert registry_unlabeled_category(reg) == "Unknown"
    known = reg["fields"]["labels"]["categorical_mapping"]
    q = adata.copy()
    q.obs["cell_type"] = ["t0", "t_new", "t1", "t_new"] * 3
    with pytest.warns(UserWarning, match=r"6 cell\(s\).*'t_new'.*'Unknown'"):
        new = transfer_setup(q, reg, extend_categories=True, allow_missing_labels=True)
    assert new["fields"]["labels"]["categorical_mapping"] == known  # never extended
    assert list(q.obs["cell_type"]) == ["t0", "Unknown", "t1", "Unknown"] * 3


def test_query_without_labels_column_is_all_unlabeled(adata):
    reg = setup_anndata(adata, batch_key="batch", labels_key="cell_type", unlabeled_category="Unknown")
    q = adata.copy()
    del q.obs["cell_type"]
    with pytest.warns(UserWarning, match="no adata.obs\\['cell_type'\\]"):
        new = transfer_setup(q, reg, extend_categories=True, allow_missing_labels=True)
    assert new["fields"]["labels"]["categorical_mapping"] == reg["fields"]["labels"]["categorical_mapping"]
    assert (q.obs["cell_type"] == "Unknown").all()


def test_query_with_only_known_labels_is_left_alone(adata):
    reg = setup_anndata(adata, batch_key="batch", labels_key="cell_type", unlabeled_category="Unknown")
    q = adata.copy()
    before = q.obs["cell_type"].copy()
    transfer_setup(q, reg, allow_missing_labels=True)
    assert np.array_equal(q.obs["cell_type"].to_numpy(), before.to_numpy())
