"""VAE construction, forward pass and loss."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from module_testdata import (  # one_thread is a fixture, used through pytestmark
    N_BATCH,
    N_CELLS,
    N_CONT,
    N_GENES,
    assert_close,
    library_priors,
    make_tensors,
    make_vae,
    one_thread,  # noqa: F401
)
from torch.distributions import Normal, kl_divergence

from snakevi.module import VAE, LossOutput, NegativeBinomial, Poisson, ZeroInflatedNegativeBinomial

LIKELIHOOD_CLASS = {"zinb": ZeroInflatedNegativeBinomial, "nb": NegativeBinomial, "poisson": Poisson}

pytestmark = pytest.mark.usefixtures("one_thread")


def _assert_finite(*tensors):
    for t in tensors:
        assert bool(torch.isfinite(t).all()), t


def _check_outputs(module, tensors, n_latent=4):
    inference, generative, losses = module(tensors)
    assert inference["z"].shape == (N_CELLS, n_latent)
    assert inference["library"].shape == (N_CELLS, 1)
    assert isinstance(generative["px"], LIKELIHOOD_CLASS[module.gene_likelihood])
    assert generative["px"].mean.shape == (N_CELLS, N_GENES)
    assert isinstance(losses, LossOutput)
    assert losses.loss.dim() == 0
    assert losses.reconstruction_loss.shape == (N_CELLS,)
    assert set(losses.kl_local) == {"kl_divergence_l", "kl_divergence_z"}
    for v in losses.kl_local.values():
        assert v.shape == (N_CELLS,)
    _assert_finite(losses.loss, losses.reconstruction_loss, *losses.kl_local.values())
    return inference, generative, losses


@pytest.mark.parametrize("gene_likelihood", ["zinb", "nb", "poisson"])
@pytest.mark.parametrize("dispersion", ["gene", "gene-batch", "gene-label", "gene-cell"])
def test_forward_every_likelihood_and_dispersion_with_covariates(gene_likelihood, dispersion):
    torch.manual_seed(0)
    module = make_vae(covariates=True, gene_likelihood=gene_likelihood, dispersion=dispersion)
    _, generative, losses = _check_outputs(module, make_tensors(covariates=True))
    if gene_likelihood != "poisson":
        assert generative["px"].theta.shape[-1] == N_GENES
    losses.loss.backward()
    grads = [p.grad for p in module.decoder.parameters() if p.grad is not None]
    assert grads and all(bool(torch.isfinite(g).all()) for g in grads)


def test_default_construction_matches_scvi_defaults_and_state_dict_layout():
    module = VAE(N_GENES)
    assert (module.n_batch, module.n_labels, module.n_latent) == (0, 0, 10)
    assert (module.dispersion, module.gene_likelihood, module.latent_distribution) == ("gene", "zinb", "normal")
    assert module.use_observed_lib_size and module.log_variational and not module.encode_covariates
    sd = module.state_dict()
    assert sd["px_r"].shape == (N_GENES,)
    assert sd["z_encoder.encoder.fc_layers.Layer 0.0.weight"].shape == (128, N_GENES)
    assert sd["z_encoder.encoder.fc_layers.Layer 0.1.running_mean"].shape == (128,)
    assert sd["z_encoder.mean_encoder.weight"].shape == (10, 128)
    assert sd["l_encoder.mean_encoder.weight"].shape == (1, 128)
    assert sd["decoder.px_decoder.fc_layers.Layer 0.0.weight"].shape == (128, 10)
    assert sd["decoder.px_scale_decoder.0.weight"].shape == (N_GENES, 128)
    assert sd["decoder.px_r_decoder.weight"].shape == (N_GENES, 128)
    assert sd["decoder.px_dropout_decoder.weight"].shape == (N_GENES, 128)
    assert not any(k.startswith("library_log") for k in sd)
    # Dropout in the encoder only, rate 0.1.
    dropouts = [m.p for m in module.z_encoder.modules() if isinstance(m, torch.nn.Dropout)]
    assert dropouts == [0.1]
    assert not any(isinstance(m, torch.nn.Dropout) for m in module.decoder.modules())


def test_same_seed_gives_same_initial_weights():
    torch.manual_seed(3)
    a = make_vae()
    torch.manual_seed(3)
    b = make_vae()
    assert all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())


def test_covariates_reach_decoder_always_and_encoder_only_when_asked():
    n_cov = N_BATCH + 3  # one-hot batch + the 3-category covariate; the 1-category one is skipped
    plain = make_vae(covariates=True, n_layers=2)
    layer = "fc_layers.Layer {}.0"
    assert plain.z_encoder.encoder.get_submodule(layer.format(0)).in_features == N_GENES
    assert plain.decoder.px_decoder.get_submodule(layer.format(0)).in_features == 4 + N_CONT + n_cov
    assert plain.decoder.px_decoder.get_submodule(layer.format(1)).in_features == 16 + n_cov

    encoded = make_vae(covariates=True, n_layers=2, encode_covariates=True, deeply_inject_covariates=False)
    assert encoded.z_encoder.encoder.get_submodule(layer.format(0)).in_features == N_GENES + N_CONT + n_cov
    assert encoded.z_encoder.encoder.get_submodule(layer.format(1)).in_features == 16
    assert encoded.l_encoder.encoder.get_submodule(layer.format(0)).in_features == N_GENES + N_CONT + n_cov
    _check_outputs(encoded, make_tensors(covariates=True))


def test_decoder_output_depends_on_batch():
    torch.manual_seed(0)
    module = make_vae().eval()
    tensors = make_tensors()
    inference = module.inference(**module._get_inference_input(tensors))
    gen_in = module._get_generative_input(tensors, inference)
    a = module.generative(**{**gen_in, "batch_index": torch.zeros_like(gen_in["batch_index"])})
    b = module.generative(**{**gen_in, "batch_index": torch.ones_like(gen_in["batch_index"])})
    assert not torch.allclose(a["px"].mu, b["px"].mu)


def test_observed_library_is_log_total_counts():
    module = make_vae()
    tensors = make_tensors()
    inference, generative, losses = module(tensors)
    assert_close(inference["library"], torch.log(tensors["X"].sum(1, keepdim=True)))
    assert generative["pl"] is None and inference["ql"] is None
    assert torch.equal(losses.kl_local["kl_divergence_l"], torch.zeros(N_CELLS))


def test_size_factor_replaces_library_and_forces_observed_mode():
    module = make_vae(use_size_factor_key=True, use_observed_lib_size=False)
    assert module.use_observed_lib_size
    assert isinstance(module.decoder.px_scale_decoder[1], torch.nn.Softplus)
    tensors = make_tensors(size_factor=True)
    _, generative, _ = _check_outputs(module, tensors)
    px = generative["px"]
    assert_close(px.mu, tensors["size_factor"] * px.scale)
    with pytest.raises(ValueError, match="size_factor"):
        module(make_tensors())


def test_latent_library_has_prior_buffers_and_nonzero_kl():
    means, variances = library_priors()
    module = make_vae(use_observed_lib_size=False, library_log_means=means[0], library_log_vars=variances)
    assert module.library_log_means.shape == module.library_log_vars.shape == (1, N_BATCH)
    assert "library_log_vars" in module.state_dict()
    tensors = make_tensors()
    inference, generative, losses = _check_outputs(module, tensors)
    assert isinstance(inference["ql"], Normal)
    assert bool((losses.kl_local["kl_divergence_l"] > 0).all())
    pl = generative["pl"]
    assert_close(pl.loc, torch.full((N_CELLS, 1), float(np.log(40.0))))
    expected_kl = kl_divergence(inference["ql"], pl).sum(-1)
    assert_close(losses.kl_local["kl_divergence_l"], expected_kl)


def test_ln_latent_is_on_the_simplex():
    module = make_vae(latent_distribution="ln", use_layer_norm="both", use_batch_norm="encoder")
    inference, _, _ = _check_outputs(module, make_tensors())
    assert_close(inference["z"].sum(-1), torch.ones(N_CELLS))


def test_gene_batch_dispersion_selects_the_batch_column():
    module = make_vae(dispersion="gene-batch", gene_likelihood="nb")
    tensors = make_tensors()
    _, generative, _ = module(tensors)
    expected = torch.exp(module.px_r.T[tensors["batch"][:, 0]])
    assert_close(generative["px"].theta, expected)


def test_loss_is_the_negative_elbo_with_kl_weight_on_z_only():
    torch.manual_seed(0)
    means, variances = library_priors()
    module = make_vae(use_observed_lib_size=False, library_log_means=means, library_log_vars=variances)
    tensors = make_tensors()
    inference, generative = module(tensors, compute_loss=False)
    losses = module.loss(tensors, inference, generative, kl_weight=0.3)
    qz = inference["qz"]
    rec = -generative["px"].log_prob(tensors["X"]).sum(-1)
    kl_z = kl_divergence(qz, Normal(torch.zeros_like(qz.loc), torch.ones_like(qz.scale))).sum(-1)
    kl_l = losses.kl_local["kl_divergence_l"]
    assert_close(losses.reconstruction_loss, rec)
    assert_close(losses.kl_local["kl_divergence_z"], kl_z)
    assert_close(losses.loss, torch.mean(rec + 0.3 * kl_z + kl_l))
    assert losses.n_obs_minibatch == N_CELLS
    assert_close(losses.kl_local_sum, (kl_z + kl_l).sum())


@pytest.mark.parametrize("gene_likelihood", ["zinb", "nb", "poisson"])
def test_precomputed_log_factorial_gives_the_same_loss_and_gradients(gene_likelihood):
    torch.manual_seed(0)
    module = make_vae(gene_likelihood=gene_likelihood)
    tensors = make_tensors()
    with_key = {**tensors, "x_log_factorial": torch.lgamma(tensors["X"] + 1).sum(-1, keepdim=True)}
    results = []
    for batch in (tensors, with_key):
        module.zero_grad()
        torch.manual_seed(1)  # the same z sample both times
        losses = module(batch)[-1]
        losses.loss.backward()
        grads = [p.grad.clone() for p in module.parameters() if p.grad is not None]
        results.append((losses.reconstruction_loss.detach(), grads))
    (rec_dense, grads_dense), (rec_key, grads_key) = results
    assert_close(rec_key, rec_dense)
    assert len(grads_key) == len(grads_dense) > 0
    for a, b in zip(grads_dense, grads_key):
        assert_close(a, b)
    # The key is really what the loss uses: shifting it shifts the reconstruction loss.
    torch.manual_seed(1)
    shifted = module({**with_key, "x_log_factorial": with_key["x_log_factorial"] + 2.0})[-1]
    assert_close(shifted.reconstruction_loss, rec_key + 2.0)


def test_forward_accepts_loss_kwargs():
    torch.manual_seed(0)
    module = make_vae().eval()
    tensors = make_tensors()
    torch.manual_seed(1)
    full = module(tensors)[2]
    torch.manual_seed(1)
    none = module(tensors, loss_kwargs={"kl_weight": 0.0})[2]
    assert_close(none.loss, full.reconstruction_loss.mean())


@pytest.mark.parametrize(
    ("argument", "value", "allowed"),
    [
        ("dispersion", "gene-cells", "'gene', 'gene-batch', 'gene-label', 'gene-cell'"),
        ("gene_likelihood", "normal", "'zinb', 'nb', 'poisson'"),
        ("latent_distribution", "lognormal", "'normal', 'ln'"),
        ("use_batch_norm", True, "'none', 'encoder', 'decoder', 'both'"),
        ("use_layer_norm", "all", "'none', 'encoder', 'decoder', 'both'"),
    ],
)
def test_invalid_choices_name_argument_value_and_allowed(argument, value, allowed):
    with pytest.raises(ValueError) as err:
        make_vae(**{argument: value})
    assert str(err.value) == f"VAE: {argument}={value!r} is not valid; choose one of {allowed}."


def test_invalid_combinations_raise_clear_errors():
    with pytest.raises(ValueError, match="library_log_means and library_log_vars"):
        make_vae(use_observed_lib_size=False)
    means, variances = library_priors(n_batch=2)
    with pytest.raises(ValueError, match="library_log_means has 2 entries but the model has 3"):
        make_vae(use_observed_lib_size=False, library_log_means=means, library_log_vars=variances)
    with pytest.raises(ValueError, match="n_batch >= 1"):
        VAE(N_GENES, dispersion="gene-batch")
    with pytest.raises(ValueError, match="n_labels >= 1"):
        VAE(N_GENES, dispersion="gene-label")
    with pytest.raises(ValueError, match="var_activation"):
        make_vae(var_activation="exp")


def test_no_batch_module_runs_on_zero_batch_codes():
    module = VAE(N_GENES, n_hidden=8, n_latent=3)
    tensors = make_tensors()
    tensors["batch"] = torch.zeros_like(tensors["batch"])
    _check_outputs(module, tensors, n_latent=3)


@pytest.mark.parametrize("gene_likelihood", ["zinb", "nb", "poisson"])
def test_training_step_never_reads_a_tensor_back_to_python(monkeypatch, gene_likelihood):
    """Forward, loss and backward must not call what forces a device-to-host sync on a GPU."""
    means, variances = library_priors()
    module = make_vae(
        covariates=True,
        gene_likelihood=gene_likelihood,
        dispersion="gene-batch",
        encode_covariates=True,
        n_layers=2,
        use_observed_lib_size=False,
        library_log_means=means,
        library_log_vars=variances,
    )
    tensors = make_tensors(covariates=True)

    def forbidden(*args, **kwargs):
        raise AssertionError("tensor value read back to Python during a training step")

    for name in ("item", "tolist", "numpy", "__bool__", "__int__", "__float__", "__index__"):
        monkeypatch.setattr(torch.Tensor, name, forbidden)
    losses = module(tensors, loss_kwargs={"kl_weight": torch.tensor(0.5)})[2]
    losses.loss.backward()
    monkeypatch.undo()
    assert math.isfinite(losses.loss.item())
