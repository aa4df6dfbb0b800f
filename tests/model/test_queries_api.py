"""The get_* queries against scvi-tools 1.4's signatures and semantics (VAEMixin, RNASeqMixin).

The ELBO, reconstruction error and marginal likelihood draw ``z``, so the tests seed torch
before each call that is compared with another.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from snakevi.data import AnnDataLoader, simulate
from snakevi.model import SCANVI, SCVI

SMALL = dict(n_hidden=16, n_latent=3)
FIT = dict(max_epochs=2, batch_size=32, enable_progress_bar=False)
IDX = np.array([5, 0, 17, 42, 3])


def _adata(labels=False):
    ad = simulate(n_cells=90, n_genes=30, n_batches=2, n_groups=3, seed=0)
    if labels:
        ad.obs["label"] = ad.obs["label"].cat.add_categories("Unknown")
        ad.obs.loc[ad.obs_names[::4], "label"] = "Unknown"
        SCANVI.setup_anndata(ad, labels_key="label", unlabeled_category="Unknown", batch_key="batch")
    else:
        SCVI.setup_anndata(ad, batch_key="batch")
    return ad


@pytest.fixture(scope="module")
def scvi():
    return SCVI(_adata(), **SMALL).train(**FIT)


@pytest.fixture(scope="module")
def scanvi():
    return SCANVI(_adata(labels=True), **SMALL).train(**FIT)


def _seeded(fn, *args, **kwargs):
    torch.manual_seed(0)
    return fn(*args, **kwargs)


# ---- ELBO, reconstruction error, marginal likelihood -------------------------------------------
@pytest.mark.parametrize("name", ["scvi", "scanvi"])
def test_per_cell_elbo_and_reconstruction_error_average_to_the_returned_mean(name, request):
    model = request.getfixturevalue(name)
    n = model.adata.n_obs
    per_cell = _seeded(model.get_elbo, return_mean=False)
    assert isinstance(per_cell, np.ndarray) and per_cell.shape == (n,)
    assert _seeded(model.get_elbo) == pytest.approx(per_cell.mean(), rel=1e-9)
    rec = _seeded(model.get_reconstruction_error, return_mean=False)
    assert set(rec) == {"reconstruction_loss"} and rec["reconstruction_loss"].shape == (n,)
    mean = _seeded(model.get_reconstruction_error)["reconstruction_loss"]
    assert mean == pytest.approx(rec["reconstruction_loss"].mean(), rel=1e-9)
    ll = _seeded(model.get_marginal_ll, n_mc_samples=5, return_mean=False)
    assert ll.shape == (n,)
    assert _seeded(model.get_marginal_ll, n_mc_samples=5) == pytest.approx(ll.mean(), rel=1e-9)


def test_indices_pick_those_cells_and_the_scvi_tools_positional_order_works(scvi):
    loader = [next(iter(AnnDataLoader(scvi.data, indices=IDX, batch_size=len(IDX))))]
    by_indices = _seeded(scvi.get_elbo, None, IDX, 128, None, False)  # adata, indices, batch_size, dataloader, return_mean
    by_loader = _seeded(scvi.get_elbo, dataloader=loader, return_mean=False)
    np.testing.assert_array_equal(by_indices, by_loader)
    rec = _seeded(scvi.get_reconstruction_error, None, IDX, 128, None, False)["reconstruction_loss"]
    assert rec.shape == (len(IDX),)
    latent = scvi.get_latent_representation()
    # Other minibatch compositions: equal up to float32 rounding of the matrix products.
    np.testing.assert_allclose(scvi.get_latent_representation(None, IDX), latent[IDX], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(scvi.get_latent_representation(None, IDX, True, 5000, 2), latent[IDX],
                               rtol=1e-5, atol=1e-6)


def test_adata_and_dataloader_together_are_refused(scvi):
    loader = AnnDataLoader(scvi.data, batch_size=16)
    with pytest.raises(ValueError, match="adata or dataloader, not both"):
        scvi.get_elbo(scvi.adata, dataloader=loader)


# ---- latent space and library ------------------------------------------------------------------
def test_latent_representation_return_dist_gives_mean_and_variance(scvi):
    mean, var = scvi.get_latent_representation(return_dist=True)
    assert mean.shape == var.shape == (90, 3) and (var > 0).all()
    np.testing.assert_array_equal(mean, scvi.get_latent_representation())
    loader = AnnDataLoader(scvi.data, batch_size=16)
    np.testing.assert_allclose(scvi.get_latent_representation(dataloader=loader), mean, rtol=1e-5, atol=1e-6)


def test_latent_library_size(scvi):
    observed = scvi.get_latent_library_size(give_mean=False)
    counts = np.asarray(scvi.adata.X.sum(1)).reshape(-1, 1)
    np.testing.assert_allclose(observed, counts, rtol=1e-5)
    with pytest.raises(RuntimeError, match="give_mean=False"):
        scvi.get_latent_library_size()
    latent = SCVI(_adata(), use_observed_lib_size=False, **SMALL)
    values = latent.get_latent_library_size(indices=IDX)
    assert values.shape == (len(IDX), 1) and (values > 0).all()


# ---- expression ----------------------------------------------------------------------------------
def test_likelihood_parameters_as_scvi_tools(scvi):
    params = scvi.get_likelihood_parameters(indices=IDX)
    assert set(params) == {"mean", "dispersions", "dropout"}
    assert params["mean"].shape == (len(IDX), 30)
    assert ((params["dropout"] > 0) & (params["dropout"] < 1)).all()  # zero-inflation probabilities
    sampled = scvi.get_likelihood_parameters(n_samples=3, give_mean=True)
    assert all(v.shape == (90, 30) for v in sampled.values())


def test_normalized_expression_n_samples_overall_and_weights(scvi):
    pooled = scvi.get_normalized_expression(n_samples_overall=50)
    assert isinstance(pooled, np.ndarray) and pooled.shape == (50, 30)
    np.testing.assert_allclose(pooled.sum(1), 1.0, rtol=1e-4)
    assert scvi.get_normalized_expression(indices=IDX, weights="uniform").shape == (len(IDX), 30)
    with pytest.raises(NotImplementedError, match="weights='importance'"):
        scvi.get_normalized_expression(weights="importance")
    with pytest.raises(ValueError, match="weights='other'"):
        scvi.get_normalized_expression(weights="other")
    loader = AnnDataLoader(scvi.data, indices=IDX, batch_size=2)
    from_loader = scvi.get_normalized_expression(dataloader=loader)
    assert isinstance(from_loader, np.ndarray) and from_loader.shape == (len(IDX), 30)


def test_posterior_predictive_sample_with_transform_batch(scvi):
    torch.manual_seed(0)
    own = scvi.posterior_predictive_sample(indices=IDX).toarray()
    torch.manual_seed(0)
    other = scvi.posterior_predictive_sample(indices=IDX, transform_batch="batch1").toarray()
    assert own.shape == other.shape == (len(IDX), 30)
    assert not np.array_equal(own, other)  # batch0 cells decoded as batch1 differ
    assert scvi.posterior_predictive_sample(None, IDX, ["batch0", "batch1"], 2).shape == (len(IDX), 30, 2)
