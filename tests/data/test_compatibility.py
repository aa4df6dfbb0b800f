"""check_compatible: one check of "does this data fit this registry", for AnnData, CellData and registries."""

from __future__ import annotations

import copy
import re

import numpy as np
import pandas as pd
import pytest

from snakevi.data import CellData, RegistrationError, setup_anndata
from snakevi.data.compatibility import check_compatible, unseen_categories

FULL = dict(batch_key="batch", labels_key="cell_type", categorical_covariate_keys=["site"],
            continuous_covariate_keys=["age"], size_factor_key="sf")


@pytest.fixture()
def registry(adata):
    return setup_anndata(adata.copy(), **FULL)


def test_the_data_a_registry_was_made_from_fits_it(adata, registry):
    check_compatible(registry, adata)
    check_compatible(registry, registry)
    check_compatible(registry, CellData.from_anndata(adata, registry))


@pytest.mark.parametrize("genes, words", [
    (["g0", "g1", "g2", "g3", "g4"][::-1], ["has the model's 5 genes but in a different order", "Reorder them"]),
    (["g0", "g1", "g2", "x8", "x9"], ["(2 missing, 2 extra)", "2 of the model's 5 genes are missing",
                                      "lacks 2 of the model's genes", "'g3', 'g4'", "2 genes are not the model's",
                                      "'x8', 'x9'", "the dataset the model was trained on"]),
])
def test_other_genes_are_refused_naming_them(new_adata, registry, genes, words):
    other = new_adata()
    other.var_names = genes
    with pytest.raises(RegistrationError) as err:
        check_compatible(registry, other)
    for word in words:
        assert word in str(err.value)


def test_superset_allows_extra_genes_in_any_order_and_skip_checks_none(new_adata, registry):
    x = np.concatenate([new_adata().X, np.ones((12, 2), np.float32)], axis=1)
    wider = new_adata(x)
    wider.var_names = ["x0", "g4", "g3", "g2", "g1", "g0", "x1"]
    check_compatible(registry, wider, genes="superset")
    with pytest.raises(RegistrationError, match=r"\(0 missing, 2 extra\)"):
        check_compatible(registry, wider)
    narrow = new_adata()[:, :3].copy()
    with pytest.raises(RegistrationError, match="lacks 2 of the model's genes"):
        check_compatible(registry, narrow, genes="superset")
    check_compatible(registry, narrow, genes="skip")


def test_unseen_categories_are_refused_unless_new_ones_may_be_appended(adata, registry):
    other = adata.copy()
    other.obs["batch"] = other.obs["batch"].cat.rename_categories({"b1": "b_new"})
    other.obs["site"] = other.obs["site"].cat.rename_categories({"s0": "s_new"})
    words = (r"adata.obs\['batch'\] \(batch_key\) has 4 cell\(s\) with 1 category the model does not know: "
             r"'b_new'. Known categories: 'b0', 'b1', 'b2'")
    with pytest.raises(RegistrationError, match=words):
        check_compatible(registry, other)
    with pytest.raises(RegistrationError, match=r"adata.obs\['site'\].*'s_new'.*extend_categories=True"):
        check_compatible(registry, other, new_categories=["batch"])
    check_compatible(registry, other, new_categories=True)
    assert unseen_categories(registry, other, "batch") == ["b_new"]
    assert unseen_categories(registry, other, cov_key="site") == ["s_new"]


def test_missing_columns_and_layer_are_named(adata, registry):
    for key, role in [("batch", "batch key (batch_key)"), ("site", "categorical_covariate_keys"),
                      ("age", "continuous_covariate_keys"), ("sf", "size_factor_key")]:
        other = adata.copy()
        del other.obs[key]
        words = rf"no adata.obs\['{key}'\] column, the model's .*{re.escape(role)}"
        with pytest.raises(RegistrationError, match=words):
            check_compatible(registry, other)
    layered = setup_anndata(_with_layer(adata), layer="counts")
    with pytest.raises(RegistrationError, match=r"no adata.layers\['counts'\], where the model reads its counts"):
        check_compatible(layered, adata)


def _with_layer(adata):
    out = adata.copy()
    out.layers["counts"] = out.X.copy()
    return out


def test_a_query_may_lack_labels_only_when_the_registry_has_an_unlabeled_category(adata):
    scanvi = setup_anndata(adata.copy(), batch_key="batch", labels_key="cell_type", unlabeled_category="Unknown")
    scvi = setup_anndata(adata.copy(), batch_key="batch", labels_key="cell_type")
    query = adata.copy()
    query.obs["cell_type"] = ["t_new"] * query.n_obs
    check_compatible(scanvi, query, query=True, new_categories=True)
    with pytest.raises(RegistrationError, match=r"12 cell\(s\) with 1 label\(s\) the reference model does not know: "
                                                r"'t_new'.*no unlabeled category"):
        check_compatible(scvi, query, query=True, new_categories=True, owner="the reference model")
    # Outside a query labels grow only when asked and when there is no unlabeled category.
    check_compatible(scvi, query, new_categories=True)
    with pytest.raises(RegistrationError, match="'t_new'"):
        check_compatible(scanvi, query, new_categories=True)
    del query.obs["cell_type"]
    check_compatible(scanvi, query, query=True)
    with pytest.raises(RegistrationError, match=r"no adata.obs\['cell_type'\]"):
        check_compatible(scvi, query, query=True)


def test_a_query_with_none_of_the_genes_is_told_to_name_them_alike(new_adata, registry):
    other = new_adata()
    other.var_names = [f"ENSG{i}" for i in range(5)]
    with pytest.raises(RegistrationError, match="None of the reference's 5 genes.*same way"):
        check_compatible(registry, other, query=True)
    shuffled = new_adata()[:, ::-1].copy()
    with pytest.raises(RegistrationError, match="different order.*prepare_query_anndata.*inplace_subset_query_vars"):
        check_compatible(registry, shuffled, query=True)


@pytest.mark.parametrize("edit, words", [
    (lambda f: f["X"].update(column_names=f["X"]["column_names"][::-1]), "in a different order"),
    (lambda f: f["batch"].update(categorical_mapping=["b1", "b0", "b2"]), "batch categories ['b1', 'b0', 'b2']"),
    (lambda f: f["labels"].update(categorical_mapping=["t1", "t0"]), "labels categories"),
    (lambda f: f["extra_categorical_covs"]["mappings"].update(site=["s0", "s1"]), "categorical covariate 'site'"),
    (lambda f: f["extra_categorical_covs"].update(field_keys=[]), "categorical covariates [] differ"),
    (lambda f: f["extra_continuous_covs"].update(columns=[]), "continuous covariates [] differ"),
])
def test_registries_must_map_alike(registry, edit, words):
    given = copy.deepcopy(registry)
    edit(given["fields"])
    with pytest.raises(RegistrationError) as err:
        check_compatible(registry, given, owner="the SCVI model", context="from_scvi_model: ")
    assert str(err.value).startswith("from_scvi_model: ") and words in str(err.value), str(err.value)


def test_labels_false_ignores_only_the_label_mapping(registry):
    given = copy.deepcopy(registry)
    given["fields"]["labels"]["categorical_mapping"] = ["t0", "t1", "Unknown"]
    check_compatible(registry, given, labels=False)
    with pytest.raises(RegistrationError, match="labels categories"):
        check_compatible(registry, given)


def test_mixed_type_categories_keep_the_column_order(adata):
    reg = setup_anndata(adata.copy(), batch_key="batch")
    other = adata.copy()
    other.obs["batch"] = pd.Categorical([1, "z"] * 6, categories=[1, "z"])
    assert unseen_categories(reg, other) == [1, "z"]
