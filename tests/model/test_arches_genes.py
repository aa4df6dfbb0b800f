"""prepare_query_anndata: the query gets the reference's genes, in order, zeros where missing."""

from __future__ import annotations

import warnings

import anndata
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from snakevi.data import RegistrationError
from snakevi.model import SCVI
from snakevi.model.arches import prepare_query_anndata


def _adata(genes, n_obs=6, fmt="csr", seed=0):
    x = np.random.default_rng(seed).poisson(3.0, size=(n_obs, len(genes))).astype(np.float32) + 1
    X = sp.csr_matrix(x) if fmt == "csr" else sp.csc_matrix(x) if fmt == "csc" else x
    ad = anndata.AnnData(X=X, obs=pd.DataFrame(index=[f"c{i}" for i in range(n_obs)]),
                         var=pd.DataFrame(index=list(genes)))
    ad.obs["batch"] = "b0"
    return ad


@pytest.fixture(scope="module")
def reference():
    ref = _adata([f"g{i}" for i in range(10)], n_obs=20)
    SCVI.setup_anndata(ref, batch_key="batch")
    return SCVI(ref, n_hidden=8, n_latent=2)


def _dense(m):
    return m.toarray() if sp.issparse(m) else np.asarray(m)


def test_reference_var_names_are_returned(reference):
    names = SCVI.prepare_query_anndata(None, reference, return_reference_var_names=True)
    assert isinstance(names, pd.Index) and list(names) == [f"g{i}" for i in range(10)]


@pytest.mark.parametrize("inplace", [True, False])
def test_genes_are_reordered_and_extra_genes_dropped(reference, inplace):
    genes = [f"g{i}" for i in range(10)][::-1] + ["extra1", "extra2"]
    q = _adata(genes)
    original = pd.DataFrame(_dense(q.X), columns=genes)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing is padded, so nothing to warn about
        out = prepare_query_anndata(q, reference, inplace=inplace)
    result = q if inplace else out
    assert (out is None) == inplace
    assert list(result.var_names) == [f"g{i}" for i in range(10)]
    np.testing.assert_array_equal(_dense(result.X), original[[f"g{i}" for i in range(10)]].to_numpy())


@pytest.mark.parametrize("fmt", ["csr", "csc", "dense"])
def test_missing_genes_are_padded_with_zeros_with_a_warning(reference, fmt):
    genes = ["g9", "g0", "g3", "g1", "g2", "g5", "g4", "g8", "zz"]  # g6, g7 missing; zz extra
    q = _adata(genes, fmt=fmt)
    q.layers["counts"] = q.X.copy()
    q.var["symbol"] = [g.upper() for g in genes]
    q.var["hv"] = True
    original = pd.DataFrame(_dense(q.X), columns=genes)
    with pytest.warns(UserWarning, match=r"2 of the reference's 10 genes are missing.*'g6', 'g7'.*zero-count"):
        out = prepare_query_anndata(q, reference, inplace=False)
    assert list(out.var_names) == [f"g{i}" for i in range(10)]
    X = _dense(out.X)
    for j, g in enumerate(out.var_names):
        expected = np.zeros(q.n_obs) if g in ("g6", "g7") else original[g].to_numpy()
        np.testing.assert_array_equal(X[:, j], expected)
    np.testing.assert_array_equal(_dense(out.layers["counts"]), X)
    assert (sp.issparse(out.X) and out.X.format == fmt) or (fmt == "dense" and isinstance(out.X, np.ndarray))
    assert out.var.loc["g6", "symbol"] == "" and out.var.loc["g2", "symbol"] == "G2"
    assert out.var["hv"].tolist() == [True] * 6 + [False, False] + [True] * 2
    assert list(q.var_names) == genes  # inplace=False leaves the query alone


def test_padding_inplace_and_from_a_saved_reference(reference, tmp_path):
    reference.save(tmp_path / "ref")
    q = _adata(["g0", "g1", "g2", "g3", "g4", "g5", "g6", "g7"])
    q.obs["donor"] = "d1"
    with pytest.warns(UserWarning, match="2 of the reference's 10 genes"):
        assert prepare_query_anndata(q, tmp_path / "ref") is None
    assert list(q.var_names) == [f"g{i}" for i in range(10)] and q.shape == (6, 10)
    assert _dense(q.X)[:, 8:].sum() == 0 and list(q.obs["donor"]) == ["d1"] * 6


def test_no_overlap_is_refused_naming_both_sides(reference):
    q = _adata(["ENSG1", "ENSG2", "ENSG3"])
    with pytest.raises(RegistrationError, match=r"None of the reference's 10 genes.*'g0'.*'ENSG1'.*same way"):
        prepare_query_anndata(q, reference)


def test_too_few_shared_genes_are_refused_with_the_numbers(reference):
    q = _adata(["g0", "g1", "g2", "x"])
    with pytest.raises(RegistrationError, match=r"Only 3 of the reference's 10 genes \(30.0%\).*at least 50%"):
        prepare_query_anndata(q, reference)
    with pytest.warns(UserWarning, match="7 of the reference's 10 genes are missing.*under 80%"):
        out = prepare_query_anndata(q, reference, inplace=False, min_gene_overlap=0.2)
    assert out.shape == (6, 10)


def test_a_view_cannot_be_prepared_in_place(reference):
    q = _adata([f"g{i}" for i in range(10)][::-1])
    with pytest.raises(ValueError, match="view"):
        prepare_query_anndata(q[:3], reference)
    assert prepare_query_anndata(q[:3], reference, inplace=False).shape == (3, 10)
