"""Every refusal of setup_anndata says what, where and how to fix it."""

from __future__ import annotations

import anndata
import numpy as np
import pytest
import scipy.sparse as sp

from snakevi.data import RegistrationError, setup_anndata
from snakevi.data import counts as counts_mod

FORMATS = ["dense", "csr", "csc"]


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize(
    "value, reason",
    [(0.5, "not an integer"), (-1.0, "negative"), (np.nan, "NaN"), (np.inf, "infinite")],
)
def test_bad_count_values_name_cell_gene_and_value(new_adata, fmt, value, reason):
    x = np.ones((6, 4), dtype=np.float32)
    x[4, 2] = value
    adata = new_adata(x, fmt=fmt)
    with pytest.raises(RegistrationError) as err:
        setup_anndata(adata)
    msg = str(err.value)
    assert "adata.X must hold raw counts" in msg
    assert "cell 'c4', gene 'g2'" in msg and reason in msg
    assert "layer=" in msg  # the fix: point at a raw-count layer


def test_bad_values_in_a_layer_name_the_layer(adata):
    adata.layers["norm"] = adata.X / 3.0
    with pytest.raises(RegistrationError, match=r"adata\.layers\['norm'\].*not an integer"):
        setup_anndata(adata, layer="norm")


def test_first_offending_entry_found_across_chunks(new_adata, monkeypatch):
    # A tiny chunk size makes the scan cross many chunks; the reported entry must still be right.
    monkeypatch.setattr(counts_mod, "_CHUNK", 3)
    x = np.ones((10, 4), dtype=np.float32)
    x[7, 1] = 2.5
    for fmt in FORMATS:
        with pytest.raises(RegistrationError, match=r"cell 'c7', gene 'g1' is 2\.5"):
            setup_anndata(new_adata(x, fmt=fmt))


def test_integer_dtype_counts_are_accepted_and_negative_refused(new_adata):
    x = np.ones((5, 3), dtype=np.int32)
    assert setup_anndata(new_adata(x))["validation"]["dtype"] == "int32"
    x[1, 1] = -2
    with pytest.raises(RegistrationError, match="negative"):
        setup_anndata(new_adata(x))


def test_missing_layer_lists_available_layers(adata):
    adata.layers["counts"] = adata.X.copy()
    adata.layers["spliced"] = adata.X.copy()
    with pytest.raises(RegistrationError, match=r"layer='raw'.*Available layers: 'counts', 'spliced'"):
        setup_anndata(adata, layer="raw")


def test_x_none_asks_for_a_layer(adata):
    adata.layers["counts"] = adata.X.copy()
    adata.X = None
    with pytest.raises(RegistrationError, match=r"adata\.X is empty.*layer=.*'counts'"):
        setup_anndata(adata)
    assert setup_anndata(adata, layer="counts")["fields"]["X"]["attr_name"] == "layers"


@pytest.mark.parametrize(
    "kwargs, role",
    [
        (dict(batch_key="donor"), "batch_key"),
        (dict(labels_key="donor"), "labels_key"),
        (dict(size_factor_key="donor"), "size_factor_key"),
        (dict(categorical_covariate_keys=["donor"]), "categorical_covariate_keys"),
        (dict(continuous_covariate_keys=["donor"]), "continuous_covariate_keys"),
    ],
)
def test_missing_obs_key_lists_columns(adata, kwargs, role):
    with pytest.raises(RegistrationError, match=rf"{role}='donor' is not a column.*'batch', 'cell_type'"):
        setup_anndata(adata, **kwargs)


def test_nan_in_categorical_counts_and_names_cells(adata):
    adata.obs["cell_type"] = adata.obs["cell_type"].astype(object)
    adata.obs.iloc[[2, 5], adata.obs.columns.get_loc("cell_type")] = np.nan
    with pytest.raises(RegistrationError, match=r"'cell_type'.*2 missing value.*'c2', 'c5'.*fillna"):
        setup_anndata(adata, labels_key="cell_type")


def test_nan_in_categorical_covariate(adata):
    adata.obs["site"] = adata.obs["site"].cat.add_categories("x")
    adata.obs.loc["c3", "site"] = np.nan
    with pytest.raises(RegistrationError, match=r"'site'.*1 missing value.*'c3'"):
        setup_anndata(adata, categorical_covariate_keys=["site"])


@pytest.mark.parametrize("axis", ["var", "obs"])
def test_duplicated_names(adata, axis):
    names = list(getattr(adata, f"{axis}_names"))
    names[1] = names[0]
    setattr(adata, f"{axis}_names", names)
    with pytest.raises(RegistrationError, match=rf"{axis}_names has 1 duplicated.*'{names[0]}'.*make_unique"):
        setup_anndata(adata)


@pytest.mark.parametrize("subset", [slice(0, 0), (slice(None), slice(0, 0))])
def test_empty_anndata(adata, subset):
    with pytest.raises(RegistrationError, match="empty"):
        setup_anndata(adata[subset].copy())


@pytest.mark.parametrize("fmt", FORMATS)
def test_zero_count_cells_refused_with_fix(new_adata, fmt):
    x = np.ones((6, 3), dtype=np.float32)
    x[[1, 4]] = 0
    with pytest.raises(RegistrationError, match=r"2 of 6 cells have zero total counts.*'c1', 'c4'.*-inf.*sum\(axis=1\)"):
        setup_anndata(new_adata(x, fmt=fmt))


@pytest.mark.parametrize("bad", [0.0, -1.0, np.nan, np.inf])
def test_size_factors_must_be_positive_finite(adata, bad):
    adata.obs.loc["c3", "sf"] = bad
    with pytest.raises(RegistrationError, match=r"'sf'.*size_factor_key.*1 zero, negative, NaN or infinite.*'c3'"):
        setup_anndata(adata, size_factor_key="sf")


def test_non_numeric_size_factor(adata):
    with pytest.raises(RegistrationError, match=r"'cell_type'.*must be numeric"):
        setup_anndata(adata, size_factor_key="cell_type")


def test_continuous_covariates_must_be_finite(adata):
    adata.obs.loc["c0", "age"] = np.nan
    with pytest.raises(RegistrationError, match=r"'age'.*NaN or infinite.*'c0'"):
        setup_anndata(adata, continuous_covariate_keys=["age"])


def test_duplicated_covariate_keys(adata):
    with pytest.raises(RegistrationError, match="'site' more than once"):
        setup_anndata(adata, categorical_covariate_keys=["site", "site"])


def test_other_storage_refused_with_conversion(adata):
    # anndata itself refuses COO in X, but a caller may hand such a matrix to the scan directly.
    with pytest.raises(RegistrationError, match=r"COO.*csr_matrix"):
        counts_mod.storage_format(sp.coo_matrix(adata.X))
    with pytest.raises(RegistrationError, match=r"list.*np\.asarray"):
        counts_mod.storage_format([[1, 2]])


def test_few_cells_in_a_category_warns(adata):
    adata.obs["rare"] = ["a"] * (adata.n_obs - 1) + ["b"]
    with pytest.warns(UserWarning, match="'b'.*only 1 cell"):
        setup_anndata(adata, batch_key="rare")


def test_view_can_be_registered(adata):
    view = adata[adata.obs["batch"] != "b2"]
    with pytest.warns(anndata.ImplicitModificationWarning):
        reg = setup_anndata(view, batch_key="batch")
    assert reg["summary"]["n_obs"] == 8
    # anndata drops the categories no cell of the subset has.
    assert reg["fields"]["batch"]["categorical_mapping"] == ["b0", "b1"]


def test_unused_categories_are_kept(adata):
    adata.obs["batch"] = adata.obs["batch"].cat.add_categories(["b9"])
    reg = setup_anndata(adata, batch_key="batch")
    assert reg["fields"]["batch"]["categorical_mapping"] == ["b0", "b1", "b2", "b9"]


def test_error_is_a_value_error(adata):
    with pytest.raises(ValueError):
        setup_anndata(adata, batch_key="nope")
