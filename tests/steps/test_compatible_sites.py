"""Every place a saved setup meets data says the same thing for the same misfit (one check_compatible).

transfer_setup, CellData.from_anndata, SCVI.load (AnnData or CellData), SCANVI.from_scvi_model,
SCVI.load_query_data and the export and map_query steps all refuse through
:func:`snakevi.data.compatibility.check_compatible`; these tests feed them the same misfit and
compare the words.
"""

from __future__ import annotations

import copy

import anndata
import pytest

from snakevi.data import CellData, RegistrationError, simulate, transfer_setup
from snakevi.model import SCANVI, SCVI
from snakevi.steps import StepError, export
from snakevi.steps.map_query import map_query


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """``(adata, model_dir)``: a 1-epoch SCVI on 120 cells x 20 genes, 2 batches, a categorical covariate."""
    ad = simulate(n_cells=120, n_genes=20, n_batches=2, seed=2)
    ad.obs["site"] = ["s0", "s1", "s2"] * 40
    SCVI.setup_anndata(ad, batch_key="batch", categorical_covariate_keys=["site"])
    model = SCVI(ad, n_hidden=8, n_latent=2).train(max_epochs=1, batch_size=64, enable_progress_bar=False)
    path = tmp_path_factory.mktemp("model") / "m"
    model.save(path)
    return ad, path


def _message(call) -> str:
    with pytest.raises((RegistrationError, StepError, ValueError)) as err:
        call()
    return str(err.value)


def _strip(ad):
    out = ad.copy()
    del out.uns["_snakevi_registry"]
    return out


def test_an_unseen_batch_reads_the_same_everywhere(saved, tmp_path):
    ad, path = saved
    other = _strip(ad)
    other.obs["batch"] = other.obs["batch"].cat.rename_categories({"batch1": "batch_new"})
    other.write_h5ad(tmp_path / "other.h5ad")
    core = ("adata.obs['batch'] (batch_key) has 64 cell(s) with 1 category the model does not know: 'batch_new'. "
            "Known categories: 'batch0', 'batch1'.")
    registry = SCVI.load(path, ad).registry
    sites = {
        "transfer_setup": lambda: transfer_setup(other.copy(), registry),
        "CellData.from_anndata": lambda: CellData.from_anndata(other, registry),
        "SCVI.load": lambda: SCVI.load(path, other.copy()),
        "export": lambda: export(path, tmp_path / "other.h5ad", tmp_path / "out" / "e.h5ad"),
    }
    for site, call in sites.items():
        assert core in _message(call), site
    assert not (tmp_path / "out").exists()


def test_missing_genes_read_the_same_everywhere(saved, tmp_path):
    ad, path = saved
    fewer = _strip(ad)[:, 3:].copy()
    fewer.write_h5ad(tmp_path / "fewer.h5ad")
    registry = SCVI.load(path, ad).registry
    for site, call in {
        "transfer_setup": lambda: transfer_setup(fewer.copy(), registry),
        "SCVI.load": lambda: SCVI.load(path, fewer.copy()),
        "export": lambda: export(path, tmp_path / "fewer.h5ad", tmp_path / "e.h5ad"),
    }.items():
        msg = _message(call)
        words = "(3 missing, 0 extra): 3 of the model's 20 genes are missing (the data lacks 3 of the model's genes"
        assert words in msg, site
    query = _message(lambda: SCVI.load_query_data(fewer.copy(), path))
    assert "(3 missing, 0 extra): 3 of the reference model's 20 genes are missing" in query
    assert "prepare_query_anndata" in query


def test_loading_onto_prepared_arrays_with_other_covariate_codes_is_refused(saved):
    # Same number of sites, another order: the weights' columns would mean other sites.
    ad, path = saved
    data = CellData.from_anndata(ad)
    registry = copy.deepcopy(data.registry)
    registry["fields"]["extra_categorical_covs"]["mappings"]["site"] = ["s2", "s1", "s0"]
    msg = _message(lambda: SCVI.load(path, CellData(data.X, data.obs, registry)))
    assert f"{path}: " in msg and "categorical covariate 'site' categories ['s2', 's1', 's0']" in msg
    assert SCVI.load(path, data).is_trained


def test_from_scvi_model_refuses_other_covariate_categories(saved):
    ad, path = saved
    scvi = SCVI.load(path, ad)
    other = _strip(ad)
    other.obs["label"] = other.obs["label"].astype(str)
    other.obs["site"] = other.obs["site"].astype("category").cat.reorder_categories(["s2", "s0", "s1"])
    msg = _message(lambda: SCANVI.from_scvi_model(scvi, "Unknown", labels_key="label", adata=other))
    assert msg.startswith("from_scvi_model: ") and "categorical covariate 'site'" in msg
    assert "the data the SCVI model was trained on" in msg


def test_a_query_without_the_batch_column_reads_the_same_in_the_library_and_the_step(saved, tmp_path):
    ad, path = saved
    query = _strip(ad)
    del query.obs["batch"]
    query.write_h5ad(tmp_path / "q.h5ad")
    library = _message(lambda: SCVI.load_query_data(query.copy(), path))
    step = _message(lambda: map_query(path, tmp_path / "q.h5ad", tmp_path / "qm", tmp_path / "h.csv",
                                      tmp_path / "e.h5ad"))
    core = "has no adata.obs['batch'] column, the reference model's batch key (batch_key)"
    assert core in library and core in step and str(tmp_path / "q.h5ad") in step
    assert not (tmp_path / "e.h5ad").exists()
    anndata.read_h5ad(tmp_path / "q.h5ad")  # the input is left as it was
