"""SCVI end to end on tiny simulated data: setup, train, queries, determinism, save/load."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from snakevi.data import simulate
from snakevi.model import SCVI, ModelFileError

TRAIN = dict(max_epochs=3, batch_size=64, enable_progress_bar=False, check_val_every_n_epoch=1)


@pytest.fixture()
def adata():
    ad = simulate(n_cells=300, n_genes=60, n_batches=2, n_groups=3, seed=1)
    SCVI.setup_anndata(ad, batch_key="batch", labels_key="label")
    return ad


@pytest.fixture()
def trained(adata):
    model = SCVI(adata, n_hidden=32, n_latent=4)
    model.train(**TRAIN)
    return model


def test_registry_lives_on_the_anndata(adata):
    assert "_snakevi_registry" in adata.uns
    model = SCVI(adata)
    assert model.summary["n_batch"] == 2 and model.summary["n_vars"] == 60


def test_unregistered_data_gets_a_clear_error():
    ad = simulate(n_cells=50, n_genes=20, seed=0)
    with pytest.raises(Exception, match="setup_anndata"):
        SCVI(ad)


def test_history_has_scvi_tools_metric_names(trained):
    h = trained.history
    assert isinstance(h, pd.DataFrame) and list(h.index) == [0, 1, 2]
    for name in [
        "train_loss", "validation_loss", "elbo_train", "elbo_validation",
        "reconstruction_loss_train", "reconstruction_loss_validation",
        "kl_local_train", "kl_local_validation", "kl_global_train", "kl_global_validation", "kl_weight",
    ]:
        assert name in h.columns, name
    assert np.isfinite(h["elbo_validation"]).all()


def test_queries_have_the_documented_shapes(trained, adata):
    n, g = adata.n_obs, adata.n_vars
    assert trained.get_latent_representation().shape == (n, 4)
    assert trained.get_latent_representation(give_mean=False).shape == (n, 4)
    expr = trained.get_normalized_expression()
    assert isinstance(expr, pd.DataFrame) and expr.shape == (n, g)
    np.testing.assert_allclose(expr.sum(1), 1.0, rtol=1e-4)
    assert list(expr.index) == list(adata.obs_names)
    scaled = trained.get_normalized_expression(library_size=1e4, transform_batch="batch0", gene_list=["gene0", "gene5"])
    assert scaled.shape == (n, 2)
    samples = trained.get_normalized_expression(n_samples=3, return_mean=False)
    assert samples.shape == (3, n, g)
    params = trained.get_likelihood_parameters()
    assert set(params) == {"mean", "dispersions", "dropout"} and params["mean"].shape == (n, g)
    assert np.isfinite(trained.get_elbo())
    assert trained.get_reconstruction_error()["reconstruction_loss"] > 0
    ll = trained.get_marginal_ll(indices=np.arange(20), n_mc_samples=10, return_mean=False)
    assert ll.shape == (20,) and np.all(ll < 0)
    counts = trained.posterior_predictive_sample(indices=np.arange(10))
    assert counts.shape == (10, g) and np.all(counts.data >= 0)
    assert trained.posterior_predictive_sample(indices=np.arange(10), n_samples=2).shape == (10, g, 2)


def test_transform_batch_must_be_known(trained):
    with pytest.raises(ValueError, match="transform_batch"):
        trained.get_normalized_expression(transform_batch="nope")


def test_same_seed_gives_identical_history_and_weights(adata):
    def run():
        model = SCVI(adata, n_hidden=32, n_latent=4, seed=7)
        model.train(**TRAIN)
        return model

    a, b = run(), run()
    pd.testing.assert_frame_equal(a.history, b.history)
    for (ka, va), (kb, vb) in zip(a.module.state_dict().items(), b.module.state_dict().items()):
        assert ka == kb and torch.equal(va, vb), ka


def test_different_seed_gives_different_weights(adata):
    a = SCVI(adata, n_hidden=16, seed=1)
    b = SCVI(adata, n_hidden=16, seed=2)
    assert not all(torch.equal(x, y) for x, y in zip(a.module.state_dict().values(), b.module.state_dict().values()))


def test_save_load_round_trip(trained, adata, tmp_path):
    trained.save(tmp_path / "m")
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["model.json", "model.pt"]
    loaded = SCVI.load(tmp_path / "m", adata)
    np.testing.assert_array_equal(loaded.get_latent_representation(), trained.get_latent_representation())
    pd.testing.assert_frame_equal(loaded.history, trained.history, check_dtype=False)
    np.testing.assert_array_equal(loaded.train_indices, trained.train_indices)
    with pytest.raises(FileExistsError, match="overwrite"):
        trained.save(tmp_path / "m")
    trained.save(tmp_path / "m", overwrite=True)


def test_load_rejects_other_genes(trained, tmp_path):
    trained.save(tmp_path / "m")
    other = simulate(n_cells=50, n_genes=61, n_batches=2, seed=3)
    with pytest.raises(ValueError, match="gene"):
        SCVI.load(tmp_path / "m", other)


def test_load_rejects_unseen_batch(trained, adata, tmp_path):
    trained.save(tmp_path / "m")
    other = adata.copy()
    other.obs["batch"] = other.obs["batch"].cat.rename_categories({"batch1": "batch_new"})
    with pytest.raises(ValueError, match="batch_new"):
        SCVI.load(tmp_path / "m", other)


def test_model_file_with_pickle_payload_is_refused(trained, tmp_path):
    trained.save(tmp_path / "m")
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    torch.save({"evil": Payload()}, tmp_path / "m" / "model.pt")
    with pytest.raises(ModelFileError, match="weights_only"):
        SCVI.load(tmp_path / "m", trained.adata)
    assert not marker.exists()


def test_new_data_for_inference_is_checked(trained, adata):
    subset = adata[:40].copy()
    z = trained.get_latent_representation(subset)
    np.testing.assert_allclose(z, trained.get_latent_representation(indices=np.arange(40)), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(gene_likelihood="nb", dispersion="gene-batch"),
        dict(gene_likelihood="poisson"),
        dict(use_observed_lib_size=False),
        dict(latent_distribution="ln", dispersion="gene-cell"),
        dict(use_layer_norm="both", use_batch_norm="none", encode_covariates=True),
    ],
)
def test_variants_train(adata, kwargs):
    model = SCVI(adata, n_hidden=16, n_latent=3, **kwargs)
    model.train(max_epochs=1, batch_size=64, enable_progress_bar=False)
    assert model.get_latent_representation().shape == (adata.n_obs, 3)


def test_covariates_and_size_factors(adata):
    adata.obs["site"] = pd.Categorical(np.where(np.arange(adata.n_obs) % 3 == 0, "a", "b"))
    adata.obs["age"] = np.linspace(0, 1, adata.n_obs)
    adata.obs["sf"] = np.asarray(adata.X.sum(1)).ravel() / 1000.0
    SCVI.setup_anndata(
        adata, batch_key="batch", size_factor_key="sf",
        categorical_covariate_keys=["site"], continuous_covariate_keys=["age"],
    )
    model = SCVI(adata, n_hidden=16)
    model.train(max_epochs=1, enable_progress_bar=False)
    assert model.summary["n_cats_per_cov"] == [2]
    assert model.get_latent_representation().shape == (adata.n_obs, 10)


def test_max_epochs_heuristic_is_used(adata, monkeypatch):
    import snakevi.train

    seen = []

    def fake_heuristic(n_obs):
        seen.append(n_obs)
        return 2

    monkeypatch.setattr(snakevi.train, "get_max_epochs_heuristic", fake_heuristic)
    model = SCVI(adata, n_hidden=8)
    model.train(max_epochs=None, enable_progress_bar=False)
    assert seen == [adata.n_obs] and len(model.history) == 2
