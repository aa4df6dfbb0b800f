"""LinearSCVI (model_class linear_scvi) and the model registry: defaults, loadings, save/load, load_model."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import snakevi
from snakevi.model import MODELS, SCANVI, SCVI, LinearSCVI, ModelFileError, load_model
from snakevi.model.registry import model_class, saved_model_class


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    adata = snakevi.data.simulate(n_cells=200, n_genes=40, n_batches=2, seed=0)
    LinearSCVI.setup_anndata(adata, batch_key="batch")
    model = LinearSCVI(adata, n_latent=3, n_hidden=16)
    model.train(max_epochs=2, batch_size=64, enable_progress_bar=False)
    out = tmp_path_factory.mktemp("linear") / "model"
    model.save(out)
    return adata, model, out


def test_registry_names_the_three_classes():
    assert list(MODELS) == ["scvi", "scanvi", "linear_scvi"]
    assert MODELS["linear_scvi"] is LinearSCVI and model_class("scanvi") is SCANVI
    with pytest.raises(ValueError, match=r"Unknown model_class 'ldvae'; use one of \['scvi', 'scanvi', 'linear_scvi'\]"):
        model_class("ldvae")


def test_defaults_match_scvi_tools(trained):
    adata, _, _ = trained
    module = LinearSCVI(adata).module
    assert (module.gene_likelihood, module.latent_distribution, module.n_latent) == ("nb", "normal", 10)
    assert module.use_batch_norm is True and module.decoder.factor_regressor.fc_layers[0][0].bias is None
    assert not module.use_observed_lib_size
    block = module.z_encoder.encoder.fc_layers
    assert len(block) == 1 and block[0][0].out_features == 128 and block[0][4].p == 0.1


def test_loadings_are_genes_by_latent_dimensions(trained):
    adata, model, _ = trained
    loadings = model.get_loadings()
    assert isinstance(loadings, pd.DataFrame) and loadings.shape == (40, 3)
    assert list(loadings.index) == list(adata.var_names) and list(loadings.columns) == ["Z_0", "Z_1", "Z_2"]
    np.testing.assert_array_equal(loadings.to_numpy(), model.module.get_loadings())


def test_save_load_round_trip_and_load_model_picks_the_class(trained):
    adata, model, out = trained
    assert saved_model_class(out) is LinearSCVI
    loaded = load_model(out, adata)
    assert type(loaded) is LinearSCVI
    np.testing.assert_array_equal(loaded.get_loadings().to_numpy(), model.get_loadings().to_numpy())
    np.testing.assert_allclose(loaded.get_latent_representation(), model.get_latent_representation(), rtol=1e-6)
    assert loaded.history_records == model.history_records


def test_load_model_of_an_scvi_bundle(tmp_path):
    adata = snakevi.data.simulate(n_cells=100, n_genes=20, seed=1)
    SCVI.setup_anndata(adata, batch_key="batch")
    SCVI(adata, n_latent=2, n_hidden=8).save(tmp_path / "m")
    assert type(load_model(tmp_path / "m", adata)) is SCVI


def test_a_bundle_of_an_unknown_class_is_refused_naming_it(trained, tmp_path):
    import json
    import shutil

    _, _, out = trained
    shutil.copytree(out, tmp_path / "m")
    meta = json.loads((tmp_path / "m" / "model.json").read_text())
    meta["model_name"] = "PEAKVI"
    (tmp_path / "m" / "model.json").write_text(json.dumps(meta))
    with pytest.raises(ModelFileError, match="holds a PEAKVI model, which this snakevi does not know"):
        saved_model_class(tmp_path / "m")


def test_covariates_are_refused_and_an_scvi_registry_is_accepted():
    adata = snakevi.data.simulate(n_cells=100, n_genes=20, seed=2)
    adata.obs["donor"] = adata.obs["batch"].astype(str).astype("category")
    SCVI.setup_anndata(adata, batch_key="batch", categorical_covariate_keys=["donor"])
    with pytest.raises(ValueError, match=r"linear_scvi takes no covariates.*setup.categorical_covariate_keys"):
        LinearSCVI(adata)
    SCVI.setup_anndata(adata, batch_key="batch")  # the workflow's register step writes SCVI registries
    assert LinearSCVI(adata, n_latent=2).module.n_latent == 2


def test_query_mapping_is_refused(trained):
    adata, _, out = trained
    with pytest.raises(ValueError, match="does not map query data"):
        LinearSCVI.load_query_data(adata, out)


def test_class_declarations():
    assert [(c.latent_key, c.predicts_labels) for c in MODELS.values()] == [
        ("X_scVI", False), ("X_scANVI", True), ("X_LinearSCVI", False)]
    assert SCANVI.pretrained_with is SCVI and set(SCANVI.phase_sections) == {"scanvi"}
