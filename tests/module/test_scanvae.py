"""SCANVAE: layout shared with VAE, classify, and the loss against a per-label hand computation."""

from __future__ import annotations

import math

import pytest
import torch
from module_testdata import N_BATCH, N_CELLS, N_GENES, assert_close, make_tensors, one_thread  # noqa: F401

from snakevi.module import SCANVAE, VAE
from snakevi.module.scanvae import categorical_kl

pytestmark = pytest.mark.usefixtures("one_thread")

K, LATENT = 3, 4


def make_scanvae(**kwargs) -> SCANVAE:
    params = {"n_input": N_GENES, "n_batch": N_BATCH, "n_labels": K, "n_hidden": 16, "n_latent": LATENT}
    params.update(kwargs)
    torch.manual_seed(0)
    return SCANVAE(**params)


def labelled(tensors, n=10):
    return {k: v[:n] for k, v in tensors.items()} | {"labels": torch.arange(n).remainder(K).unsqueeze(1)}


def test_state_dict_extends_the_vae_one_with_scvi_tools_names():
    vae = VAE(n_input=N_GENES, n_batch=N_BATCH, n_hidden=16, n_latent=LATENT).state_dict()
    scan = make_scanvae().state_dict()
    assert all(k in scan and scan[k].shape == v.shape for k, v in vae.items())
    new = set(scan) - set(vae)
    assert {"y_prior", "classifier.classifier.1.weight", "encoder_z2_z1.mean_encoder.weight",
            "decoder_z1_z2.var_decoder.weight"} <= new
    assert_close(scan["y_prior"], torch.full((1, K), 1 / K))
    assert not make_scanvae().y_prior.requires_grad
    linear = make_scanvae(linear_classifier=True)
    assert isinstance(linear.classifier.classifier[0], torch.nn.Linear) and linear.classifier.logits


def test_unsupported_or_wrong_arguments_are_refused():
    with pytest.raises(ValueError, match="use_labels_groups"):
        make_scanvae(use_labels_groups=True, labels_groups=[0, 0, 1])
    with pytest.raises(ValueError, match="y_prior"):
        make_scanvae(y_prior=[0.5, 0.5])
    with pytest.raises(ValueError, match="n_labels"):
        make_scanvae(n_labels=0)


def test_classify_gives_logits_of_the_posterior_mean():
    module = make_scanvae().eval()
    t = make_tensors()
    logits = module.classify(t["X"], batch_index=t["batch"])
    assert logits.shape == (N_CELLS, K)
    qz = module.inference(t["X"], t["batch"])["qz"]
    assert_close(logits, module.classifier(qz.loc))
    probs_module = make_scanvae(classifier_parameters={"logits": False}).eval()
    assert_close(probs_module.classify(t["X"], t["batch"]).sum(-1), torch.ones(N_CELLS))


def _normal_kl_to_standard(loc, scale):
    return (0.5 * (scale**2 + loc**2 - 1) - torch.log(scale)).sum(-1)


def _normal_log_prob(x, mean, var):
    return (-0.5 * (x - mean) ** 2 / var - 0.5 * torch.log(2 * math.pi * var)).sum(-1)


@pytest.mark.parametrize("prior", [None, [0.5, 0.3, 0.2]])
def test_loss_matches_a_per_label_hand_computation(prior):
    module = make_scanvae(y_prior=prior).eval()  # eval: no dropout, BatchNorm per row
    t = make_tensors()
    lab = labelled(t)
    torch.manual_seed(1)
    inf = module.inference(**module._get_inference_input(t))
    gen = module.generative(**module._get_generative_input(t, inf))
    torch.manual_seed(7)
    out = module.loss(t, inf, gen, kl_weight=0.3, labelled_tensors=lab, classification_ratio=50)

    # The loss draws z2 for all labels at once: the same noise, sliced per label.
    torch.manual_seed(7)
    eps = torch.empty(K * N_CELLS, LATENT).normal_()
    z1, qz1 = inf["z"], inf["qz"]
    probs = torch.softmax(module.classifier(z1), -1)
    prior_t = torch.full((K,), 1 / K) if prior is None else torch.tensor(prior)
    rec = -gen["px"].log_prob(t["X"]).sum(-1) + _normal_log_prob(z1, qz1.loc, qz1.scale**2)
    kl = (probs * torch.log(probs / prior_t)).sum(-1)
    for k in range(K):
        y = torch.full((N_CELLS, 1), k)
        qz2, _ = module.encoder_z2_z1(z1, y)
        z2 = qz2.loc + eps[k * N_CELLS : (k + 1) * N_CELLS] * qz2.scale
        mean, var = module.decoder_z1_z2(z2, y)
        rec = rec - probs[:, k] * _normal_log_prob(z1, mean, var)
        kl = kl + probs[:, k] * _normal_kl_to_standard(qz2.loc, qz2.scale)
    qz_lab = module.inference(lab["X"], lab["batch"])["qz"]
    ce = -torch.log_softmax(module.classifier(qz_lab.loc), -1)[torch.arange(10), lab["labels"][:, 0]].mean()

    assert_close(out.reconstruction_loss, rec, atol=1e-4)
    assert_close(out.kl_local, kl, atol=1e-5)
    assert_close(out.classification_loss, ce)
    assert_close(out.loss, (rec + 0.3 * kl).mean() + 50 * ce, atol=1e-3)
    assert out.logits.shape == (10, K) and torch.equal(out.true_labels, lab["labels"])


def test_without_labelled_cells_there_is_no_classification_term():
    module = make_scanvae()
    t = make_tensors()
    torch.manual_seed(3)
    _, _, out = module(t, loss_kwargs={"kl_weight": 1.0})
    assert out.classification_loss is None and out.logits is None
    assert out.reconstruction_loss.shape == out.kl_local.shape == (N_CELLS,)
    assert_close(out.loss, (out.reconstruction_loss + out.kl_local).mean())
    with pytest.raises(ValueError, match="classification_ratio"):
        module(t, loss_kwargs={"labelled_tensors": labelled(t)})


def test_latent_library_kl_is_part_of_the_warmed_up_kl():
    import numpy as np

    means, variances = np.full((1, N_BATCH), math.log(40.0)), np.full((1, N_BATCH), 0.3)
    module = make_scanvae(use_observed_lib_size=False, library_log_means=means, library_log_vars=variances).eval()
    t = make_tensors()
    inf = module.inference(**module._get_inference_input(t))
    gen = module.generative(**module._get_generative_input(t, inf))
    torch.manual_seed(2)
    with_l = module.loss(t, inf, gen, kl_weight=0.5)
    kl_l = torch.distributions.kl_divergence(inf["ql"], gen["pl"]).sum(-1)
    module.use_observed_lib_size = True  # the same draw without the library term
    torch.manual_seed(2)
    without_l = module.loss(t, inf, gen, kl_weight=0.5)
    assert_close(with_l.kl_local - without_l.kl_local, kl_l, atol=1e-5)


def test_several_posterior_samples_give_per_sample_losses():
    module = make_scanvae()
    t = make_tensors()
    _, _, out = module(t, inference_kwargs={"n_samples": 2})
    assert out.reconstruction_loss.shape == (2, N_CELLS) and out.kl_local.shape == (2, N_CELLS)
    assert bool(torch.isfinite(out.loss))


def test_categorical_kl_equals_torch_distributions_one():
    from torch.distributions import Categorical, kl_divergence

    g = torch.Generator().manual_seed(0)
    probs = torch.softmax(torch.randn(6, 4, generator=g) * 3, -1)
    probs[0] = torch.tensor([1.0, 0.0, 0.0, 0.0])
    for prior in (torch.full((6, 4), 0.25), torch.tensor([0.4, 0.3, 0.2, 0.1]).expand(6, 4),
                  torch.tensor([0.5, 0.5, 0.0, 0.0]).expand(6, 4)):
        expected = kl_divergence(Categorical(probs=probs), Categorical(probs=prior))
        assert torch.equal(categorical_kl(probs, prior), expected)
