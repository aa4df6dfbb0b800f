"""FCLayers covariate injection, Encoder and DecoderSCVI."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from module_testdata import assert_close, one_thread  # noqa: F401

from snakevi.module import DecoderSCVI, Encoder, FCLayers

pytestmark = pytest.mark.usefixtures("one_thread")


def _linears(fc: FCLayers) -> list[nn.Linear]:
    return [block[0] for block in fc.fc_layers]


def test_fclayers_input_widths_with_and_without_deep_injection():
    # n_cat 1 is skipped: covariate width = 2 (cont) + 3 + 2
    deep = FCLayers(10, 4, n_cat_list=[3, 1, 2], n_cont=2, n_layers=3, n_hidden=8, inject_covariates=True)
    shallow = FCLayers(10, 4, n_cat_list=[3, 1, 2], n_cont=2, n_layers=3, n_hidden=8, inject_covariates=False)
    assert deep.n_cov == 7
    assert [lin.in_features for lin in _linears(deep)] == [17, 15, 15]
    assert [lin.in_features for lin in _linears(shallow)] == [17, 8, 8]
    assert [lin.out_features for lin in _linears(deep)] == [8, 8, 4]


def test_fclayers_block_structure_and_norm_settings():
    fc = FCLayers(5, 3, n_layers=1, use_batch_norm=True, use_layer_norm=True, dropout_rate=0.2)
    linear, bn, ln, act, drop = list(fc.fc_layers[0])
    assert isinstance(linear, nn.Linear) and isinstance(act, nn.ReLU) and drop.p == 0.2
    assert bn.momentum == 0.01 and bn.eps == 0.001
    assert ln.elementwise_affine is False
    bare = FCLayers(5, 3, use_batch_norm=False, dropout_rate=0)
    assert [type(m).__name__ if m is not None else None for m in bare.fc_layers[0]] == [
        "Linear",
        None,
        None,
        "ReLU",
        None,
    ]
    assert "fc_layers.Layer 0.0.weight" in bare.state_dict()


def test_fclayers_equals_linear_on_concatenated_one_hots():
    torch.manual_seed(0)
    fc = FCLayers(4, 3, n_cat_list=[3, 1, 2], n_cont=2, use_batch_norm=False, use_activation=False, dropout_rate=0)
    x, cont = torch.randn(5, 4), torch.randn(5, 2)
    c0, c1, c2 = torch.tensor([[0], [2], [1], [2], [0]]), torch.zeros(5, 1, dtype=torch.long), torch.tensor(
        [[1], [0], [1], [1], [0]]
    )
    got = fc(x, c0, c1, c2, cont=cont)
    onehots = [nn.functional.one_hot(c0[:, 0], 3).float(), nn.functional.one_hot(c2[:, 0], 2).float()]
    expected = _linears(fc)[0](torch.cat([x, cont, *onehots], dim=-1))
    assert_close(got, expected)


def test_fclayers_ignores_extra_trailing_categoricals_and_rejects_missing_ones():
    fc = FCLayers(4, 3, n_cat_list=[3])
    fc.eval()
    x, c = torch.randn(2, 4), torch.tensor([[0], [2]])
    assert_close(fc(x, c, torch.tensor([[7], [9]])), fc(x, c))
    with pytest.raises(ValueError, match="1 categorical"):
        fc(x)


def test_fclayers_three_dimensional_input_in_eval_equals_per_slice():
    torch.manual_seed(0)
    fc = FCLayers(4, 6, n_cat_list=[3], n_layers=2, n_hidden=5)
    fc.train()
    fc(torch.randn(20, 4), torch.randint(0, 3, (20, 1)))  # move the running statistics
    fc.eval()
    x, c = torch.randn(3, 7, 4), torch.randint(0, 3, (7, 1))
    stacked = torch.stack([fc(s, c) for s in x])
    assert_close(fc(x, c), stacked)
    fc.train()
    assert fc(x, c).shape == (3, 7, 6)


@pytest.mark.parametrize("distribution", ["normal", "ln"])
def test_encoder_outputs(distribution):
    torch.manual_seed(0)
    enc = Encoder(8, 3, n_cat_list=[2], n_hidden=16, distribution=distribution)
    x, b = torch.randn(5, 8), torch.randint(0, 2, (5, 1))
    q_m, q_v, latent = enc(x, b)
    assert q_m.shape == q_v.shape == latent.shape == (5, 3)
    assert bool((q_v >= 1e-4).all())
    if distribution == "ln":
        assert_close(latent.sum(-1), torch.ones(5))
    enc.return_dist = True
    dist, latent = enc(x, b)
    assert isinstance(dist, torch.distributions.Normal) and dist.loc.shape == (5, 3)


def test_encoder_custom_var_activation():
    enc = Encoder(4, 2, var_activation=nn.functional.softplus, var_eps=0.5)
    _, q_v, _ = enc(torch.randn(3, 4))
    assert bool((q_v > 0.5).all())


@pytest.mark.parametrize("scale_activation", ["softmax", "softplus"])
def test_decoder_outputs(scale_activation):
    torch.manual_seed(0)
    dec = DecoderSCVI(3, 7, n_cat_list=[2], n_hidden=8, scale_activation=scale_activation)
    z, lib, b = torch.randn(4, 3), torch.rand(4, 1) * 3, torch.randint(0, 2, (4, 1))
    px_scale, px_r, px_rate, px_dropout = dec("gene", z, lib, b)
    assert px_scale.shape == px_rate.shape == px_dropout.shape == (4, 7)
    assert px_r is None
    assert_close(px_rate, torch.exp(lib) * px_scale)
    if scale_activation == "softmax":
        assert_close(px_scale.sum(-1), torch.ones(4))
    px_r = dec("gene-cell", z, lib, b)[1]
    assert px_r.shape == (4, 7)
    assert dec("gene", z, lib, b, compute_dropout=False)[3] is None


def test_decoder_has_no_dropout_and_rejects_unknown_activation():
    dec = DecoderSCVI(3, 7)
    assert not any(isinstance(m, nn.Dropout) for m in dec.modules())
    with pytest.raises(ValueError, match="scale_activation='relu'"):
        DecoderSCVI(3, 7, scale_activation="relu")
