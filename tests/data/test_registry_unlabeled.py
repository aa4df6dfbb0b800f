"""setup_anndata(unlabeled_category=...): the unlabelled category is recorded and kept last."""

from __future__ import annotations

import pandas as pd
import pytest

from snakevi.data import RegistrationError, get_registry, setup_anndata, transfer_setup


def _with_labels(adata, labels, categories=None):
    adata.obs["cell_type"] = pd.Categorical(labels, categories=categories)
    return adata


def test_unlabelled_category_is_swapped_with_the_last_one(new_adata):
    # scvi-tools swaps it with the last category (it does not move it): [A, Unknown, B, C] -> [A, C, B, Unknown].
    adata = _with_labels(new_adata(n_obs=12), ["A", "Unknown", "B", "C"] * 3, categories=["A", "Unknown", "B", "C"])
    reg = setup_anndata(adata, labels_key="cell_type", unlabeled_category="Unknown")
    field = reg["fields"]["labels"]
    assert field["categorical_mapping"] == ["A", "C", "B", "Unknown"]
    assert field["unlabeled_category"] == "Unknown" and reg["setup_args"]["unlabeled_category"] == "Unknown"
    assert reg["summary"]["n_labels"] == 4
    assert get_registry(adata) == reg


def test_absent_unlabelled_category_is_appended(new_adata):
    adata = _with_labels(new_adata(n_obs=6), ["B", "A"] * 3)
    reg = setup_anndata(adata, labels_key="cell_type", unlabeled_category="Unknown")
    assert reg["fields"]["labels"]["categorical_mapping"] == ["A", "B", "Unknown"]


def test_registry_without_unlabelled_category_is_unchanged(new_adata):
    reg = setup_anndata(new_adata(), labels_key="cell_type")
    assert "unlabeled_category" not in reg["setup_args"]
    assert "unlabeled_category" not in reg["fields"]["labels"]


def test_unlabelled_category_needs_a_labels_key(new_adata):
    with pytest.raises(RegistrationError, match="without labels_key"):
        setup_anndata(new_adata(), unlabeled_category="Unknown")


def test_transfer_keeps_the_mapping_and_never_extends_labels(new_adata):
    ref = _with_labels(new_adata(n_obs=12), ["A", "Unknown", "B", "C"] * 3)
    reg = setup_anndata(ref, labels_key="cell_type", unlabeled_category="Unknown")
    query = _with_labels(new_adata(n_obs=4), ["Unknown", "C", "Unknown", "A"])
    new = transfer_setup(query, reg, extend_categories=True)
    assert new["fields"]["labels"]["categorical_mapping"] == reg["fields"]["labels"]["categorical_mapping"]
    assert new["fields"]["labels"]["unlabeled_category"] == "Unknown"
    novel = _with_labels(new_adata(n_obs=4), ["Unknown", "D", "Unknown", "A"])
    with pytest.raises(RegistrationError, match="'D'"):
        transfer_setup(novel, reg, extend_categories=True)
