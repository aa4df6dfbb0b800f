"""VAE helpers the model layer calls: multi-sample inference, transform_batch, sample,
marginal_ll; and a short optimisation on synthetic NB counts."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from module_testdata import (  # one_thread is a fixture, used through pytestmark
    N_BATCH,
    N_CELLS,
    N_GENES,
    assert_close,
    library_priors,
    make_tensors,
    make_vae,
    one_thread,  # noqa: F401
)

from snakevi.module import VAE, log_nb_positive

pytestmark = pytest.mark.usefixtures("one_thread")


def _latent_library_vae(**kwargs):
    means, variances = library_priors()
    return make_vae(use_observed_lib_size=False, library_log_means=means, library_log_vars=variances, **kwargs)


@pytest.mark.parametrize("observed", [True, False])
def test_multi_sample_inference_and_generative_shapes(observed):
    torch.manual_seed(0)
    module = (make_vae(covariates=True) if observed else _latent_library_vae(covariates=True)).eval()
    tensors = make_tensors(covariates=True)
    inference, generative = module(tensors, inference_kwargs={"n_samples": 3}, compute_loss=False)
    assert inference["z"].shape == (3, N_CELLS, 4)
    assert inference["library"].shape == (3, N_CELLS, 1)
    assert generative["px"].mean.shape == (3, N_CELLS, N_GENES)
    assert bool(torch.isfinite(generative["px"].log_prob(tensors["X"])).all())


def test_transform_batch_equals_decoding_with_that_batch_code():
    torch.manual_seed(0)
    module = make_vae(dispersion="gene-batch", covariates=True).eval()
    tensors = make_tensors(covariates=True)
    inference = module.inference(**module._get_inference_input(tensors))
    gen_in = module._get_generative_input(tensors, inference)
    via_kwarg = module.generative(**gen_in, transform_batch=2)
    via_codes = module.generative(**{**gen_in, "batch_index": torch.full_like(gen_in["batch_index"], 2)})
    assert_close(via_kwarg["px"].mu, via_codes["px"].mu)
    assert_close(via_kwarg["px"].theta, via_codes["px"].theta)
    # And through forward(), the route the model layer uses.
    torch.manual_seed(5)
    _, gen_fwd = module(tensors, generative_kwargs={"transform_batch": 2}, compute_loss=False)
    torch.manual_seed(5)
    tensors_2 = {**tensors, "batch": torch.full_like(tensors["batch"], 2)}
    _, gen_codes = module(tensors_2, compute_loss=False)
    assert_close(gen_fwd["px"].mu, gen_codes["px"].mu)


@pytest.mark.parametrize("gene_likelihood", ["zinb", "nb", "poisson"])
def test_sample_shapes_and_values(gene_likelihood):
    torch.manual_seed(0)
    module = make_vae(gene_likelihood=gene_likelihood).eval()
    tensors = make_tensors()
    one = module.sample(tensors)
    many = module.sample(tensors, n_samples=3)
    assert one.shape == (N_CELLS, N_GENES) and many.shape == (N_CELLS, N_GENES, 3)
    for s in (one, many):
        assert s.device.type == "cpu"
        assert bool(torch.isfinite(s).all()) and bool((s >= 0).all()) and torch.equal(s, s.round())
    assert not many.requires_grad


def test_sample_clamps_poisson_rate():
    torch.manual_seed(0)
    module = make_vae(gene_likelihood="poisson").eval()
    tensors = make_tensors()
    tensors["X"] = tensors["X"] * 1e9  # library ~1e10: rates far above the cap
    draws = module.sample(tensors, max_poisson_rate=1e3)
    assert draws.max().item() < 2e3


@pytest.mark.parametrize("observed", [True, False])
def test_marginal_ll_shape_finiteness_and_elbo_bound(observed):
    torch.manual_seed(0)
    module = (make_vae() if observed else _latent_library_vae()).eval()
    tensors = make_tensors()
    ll = module.marginal_ll(tensors, n_mc_samples=12, n_mc_samples_per_pass=5)
    assert ll.shape == (N_CELLS,) and ll.device.type == "cpu"
    assert bool(torch.isfinite(ll).all())
    # Importance sampling with many samples sits above the one-sample ELBO on average.
    with torch.no_grad():
        elbo = torch.stack([-module(tensors)[2].loss for _ in range(8)]).mean()
    assert ll.mean().item() > elbo.item()
    assert module.marginal_ll(tensors, n_mc_samples=1).shape == (N_CELLS,)


def test_marginal_ll_warns_when_pass_exceeds_total():
    module = make_vae().eval()
    with pytest.warns(RuntimeWarning, match="n_mc_samples_per_pass=5 exceeds n_mc_samples=2"):
        ll = module.marginal_ll(make_tensors(), n_mc_samples=2, n_mc_samples_per_pass=5)
    assert ll.shape == (N_CELLS,)


def _nb_dataset(n_cells=256, n_genes=30, theta=5.0, seed=0):
    """Two cell types with different NB means, three batches with a depth shift.

    Returns the minibatch dict and the true per-cell, per-gene means.
    """
    rng = np.random.default_rng(seed)
    cell_type = rng.integers(0, 2, n_cells)
    batch = rng.integers(0, N_BATCH, n_cells)
    profiles = rng.gamma(2.0, 1.0, size=(2, n_genes))
    profiles /= profiles.sum(1, keepdims=True)
    depth = rng.lognormal(np.log(200) + 0.3 * batch, 0.2)
    mu = depth[:, None] * profiles[cell_type]
    x = rng.poisson(rng.gamma(theta, mu / theta)).astype(np.float32)
    tensors = {
        "X": torch.from_numpy(x),
        "batch": torch.from_numpy(batch[:, None]).long(),
        "labels": torch.zeros(n_cells, 1, dtype=torch.long),
    }
    return tensors, torch.from_numpy(mu).float()


def test_adam_steps_reduce_the_loss_on_synthetic_nb_counts():
    torch.manual_seed(0)
    data, true_mu = _nb_dataset()
    n_cells = data["X"].shape[0]
    module = VAE(30, n_batch=N_BATCH, n_hidden=32, n_latent=4, gene_likelihood="nb")
    optimizer = torch.optim.Adam(module.parameters(), lr=1e-2)

    def evaluate():
        module.eval()
        torch.manual_seed(123)
        with torch.no_grad():
            out = module(data)[2]
        module.train()
        return out.loss.item(), out.reconstruction_loss.mean().item()

    loss_before, _ = evaluate()
    for _ in range(200):
        idx = torch.randperm(n_cells)[:128]
        loss = module({k: v[idx] for k, v in data.items()})[2].loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    loss_after, rec_after = evaluate()
    oracle = -log_nb_positive(data["X"], true_mu, torch.tensor(5.0)).sum(-1).mean().item()
    assert loss_after < loss_before - 10, (loss_before, loss_after)
    # Within a few nats per cell of the likelihood under the true means and dispersion.
    assert rec_after < oracle + 5, (rec_after, oracle)
    # The inverse dispersion has moved from its N(0, 1) start towards the simulated 5.
    assert 2.0 < torch.exp(module.px_r).median().item() < 12.0
