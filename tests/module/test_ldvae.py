"""LDVAE, the linearly decoded VAE: defaults, shapes, what its loadings mean, its refusals."""

from __future__ import annotations

import pytest
import torch
from module_testdata import (  # one_thread is a fixture, used through pytestmark
    N_BATCH,
    N_CELLS,
    N_GENES,
    N_LABELS,
    assert_close,
    library_priors,
    make_tensors,
    one_thread,  # noqa: F401
)

from snakevi.module import LDVAE, LinearDecoderSCVI, NegativeBinomial

pytestmark = pytest.mark.usefixtures("one_thread")
N_LATENT = 4


def make_ldvae(n_batch: int = N_BATCH, **kwargs) -> LDVAE:
    means, variances = library_priors(n_batch)
    params = dict(n_input=N_GENES, n_batch=n_batch, n_labels=N_LABELS, n_hidden=16, n_latent=N_LATENT,
                  library_log_means=means, library_log_vars=variances)
    return LDVAE(**{**params, **kwargs})


def trained_batch_norm(module: LDVAE) -> LDVAE:
    """Give the decoder's batch norm statistics and an affine part that are not the identity."""
    bn = module.decoder.factor_regressor.fc_layers[0][1]
    if bn is None:  # use_batch_norm=False
        return module.eval()
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        bn.running_mean.copy_(torch.randn(N_GENES, generator=g))
        bn.running_var.copy_(torch.rand(N_GENES, generator=g) + 0.5)
        bn.weight.copy_(torch.rand(N_GENES, generator=g) + 0.5)
        bn.bias.copy_(torch.randn(N_GENES, generator=g))
    return module.eval()


def test_defaults_are_scvi_tools():
    module = LDVAE(n_input=N_GENES, n_batch=N_BATCH, library_log_means=library_priors()[0],
                   library_log_vars=library_priors()[1])
    assert module.gene_likelihood == "nb" and module.latent_distribution == "normal"
    assert module.n_latent == 10 and module.dispersion == "gene"
    assert not module.use_observed_lib_size  # a latent library, as scvi-tools' LDVAE
    assert module.use_batch_norm is True
    linear, bn = module.decoder.factor_regressor.fc_layers[0][:2]
    assert linear.bias is None and isinstance(bn, torch.nn.BatchNorm1d)  # bias=False, batch norm on
    # One hidden layer of 128 in the encoders, dropout 0.1, batch norm (always, as in scvi-tools).
    block = module.z_encoder.encoder.fc_layers[0]
    assert block[0].out_features == 128 and block[4].p == 0.1 and isinstance(block[1], torch.nn.BatchNorm1d)
    assert len(module.z_encoder.encoder.fc_layers) == 1


def test_state_dict_keys_are_those_of_scvi_tools_ldvae():
    keys = set(make_ldvae().state_dict())
    for key in ("px_r", "library_log_means", "library_log_vars",
                "decoder.factor_regressor.fc_layers.Layer 0.0.weight",
                "decoder.factor_regressor.fc_layers.Layer 0.1.running_var",
                "decoder.px_dropout_decoder.fc_layers.Layer 0.0.weight",
                "z_encoder.encoder.fc_layers.Layer 0.0.weight", "z_encoder.mean_encoder.weight",
                "l_encoder.var_encoder.bias"):
        assert key in keys, key
    assert not any(k.startswith("decoder.px_decoder") for k in keys)  # no scVI decoder left behind


def test_forward_shapes_and_loss():
    module = make_ldvae()
    inference, generative, losses = module(make_tensors())
    assert inference["z"].shape == (N_CELLS, N_LATENT)
    assert isinstance(generative["px"], NegativeBinomial)
    assert generative["px"].mean.shape == (N_CELLS, N_GENES)
    assert losses.reconstruction_loss.shape == (N_CELLS,) and torch.isfinite(losses.loss)
    assert bool((losses.kl_local["kl_divergence_l"] > 0).all())  # the latent library has its KL
    losses.loss.backward()
    assert module.decoder.factor_regressor.fc_layers[0][0].weight.grad is not None


def test_loadings_shape_drops_the_batch_columns():
    module = make_ldvae()
    weight = module.decoder.factor_regressor.fc_layers[0][0].weight
    assert weight.shape == (N_GENES, N_LATENT + N_BATCH)
    assert module.get_loadings().shape == (N_GENES, N_LATENT)
    assert make_ldvae(n_batch=1).get_loadings().shape == (N_GENES, N_LATENT)  # one batch: no batch columns


@pytest.mark.parametrize("use_batch_norm", [True, False])
def test_decoder_mean_is_softmax_of_loadings_times_z_plus_batch_terms(use_batch_norm):
    module = trained_batch_norm(make_ldvae(use_batch_norm=use_batch_norm))
    loadings = torch.as_tensor(module.get_loadings())
    g = torch.Generator().manual_seed(1)
    z = torch.randn(N_CELLS, N_LATENT, generator=g)
    batch = torch.randint(0, N_BATCH, (N_CELLS, 1), generator=g)
    library = torch.full((N_CELLS, 1), 3.0)
    with torch.no_grad():
        px_scale, px_r, px_rate, _ = module.decoder("gene", z, library, batch)
        # The batch terms: what the decoder adds for z = 0 (one vector per batch).
        zero = torch.zeros_like(z)
        offset = module.decoder.factor_regressor(zero, batch)
    expected = torch.softmax(z @ loadings.T + offset, dim=-1)
    assert px_r is None
    assert_close(px_scale, expected)
    assert_close(px_rate, torch.exp(library) * expected, rtol=1e-5, atol=1e-4)


def test_a_unit_of_one_latent_dimension_moves_log_expression_by_its_loadings():
    module = trained_batch_norm(make_ldvae())
    loadings = torch.as_tensor(module.get_loadings())
    z = torch.randn(1, N_LATENT, generator=torch.Generator().manual_seed(2))
    batch = torch.zeros(1, 1, dtype=torch.long)
    library = torch.zeros(1, 1)
    for k in range(N_LATENT):
        step = torch.zeros_like(z)
        step[0, k] = 1.0
        with torch.no_grad():
            before = module.decoder("gene", z, library, batch)[0].log()
            after = module.decoder("gene", z + step, library, batch)[0].log()
        change = (after - before)[0]
        # Up to the softmax's normalising constant (the same for every gene).
        assert_close(change - change.mean(), loadings[:, k] - loadings[:, k].mean(), rtol=1e-4, atol=1e-5)


def test_same_seed_same_weights():
    torch.manual_seed(7)
    a = make_ldvae()
    torch.manual_seed(7)
    b = make_ldvae()
    for key, value in a.state_dict().items():
        assert torch.equal(value, b.state_dict()[key]), key


def test_linear_decoder_without_zero_inflation_skips_its_block():
    decoder = LinearDecoderSCVI(N_LATENT, N_GENES, n_cat_list=[N_BATCH])
    out = decoder("gene", torch.randn(5, N_LATENT), torch.zeros(5, 1), torch.zeros(5, 1, dtype=torch.long),
                  compute_dropout=False)
    assert out[3] is None and out[0].shape == (5, N_GENES)


def test_gene_cell_dispersion_and_non_bool_batch_norm_are_refused():
    with pytest.raises(ValueError, match="dispersion='gene-cell'.*'gene', 'gene-batch' or 'gene-label'"):
        make_ldvae(dispersion="gene-cell")
    with pytest.raises(ValueError, match="use_batch_norm and bias must be True or False"):
        make_ldvae(use_batch_norm="both")
