"""Reference mapping (scArches): query model construction, weight transplant, freezing, training."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from snakevi.data import RegistrationError, library_size_stats, simulate
from snakevi.model import SCVI
from snakevi.model.surgery import set_params_online_update

SMALL = dict(n_hidden=16, n_latent=3)
FIT = dict(batch_size=32, enable_progress_bar=False)
QUERY_FIT = dict(FIT, plan_kwargs={"weight_decay": 0.0})  # the recommended query training
DEC0 = "decoder.px_decoder.fc_layers.Layer 0"
ENC0 = "z_encoder.encoder.fc_layers.Layer 0"


def _cells(n_cells, batches, seed, n_genes=30):
    ad = simulate(n_cells=n_cells, n_genes=n_genes, n_batches=len(batches), n_groups=3, seed=seed)
    ad.obs["batch"] = ad.obs["batch"].cat.rename_categories(batches)
    return ad


def _reference(batches=("batch0", "batch1"), setup=None, **model_kwargs):
    ad = _cells(160, list(batches), seed=0)
    setup = setup or {}
    if "categorical_covariate_keys" in setup:
        ad.obs["site"] = pd.Categorical(np.where(np.arange(ad.n_obs) % 2, "s1", "s0"))
    SCVI.setup_anndata(ad, batch_key="batch", labels_key="label", **setup)
    return SCVI(ad, **SMALL, **model_kwargs).train(max_epochs=1, **FIT), ad


@pytest.fixture(scope="module")
def reference():
    return _reference()[0]


@pytest.fixture()
def query():
    return _cells(100, ["q_b", "q_a"], seed=1)


def _state(model):
    return {k: v.detach().clone() for k, v in model.module.state_dict().items()}


def _trainable(model):
    return {n for n, p in model.module.named_parameters() if p.requires_grad}


def _changed(before, after):
    return {k for k in before if not k.endswith("num_batches_tracked") and not torch.equal(before[k], after[k])}


def test_query_model_extends_batches_and_holds_the_reference_weights(reference, query):
    model = SCVI.load_query_data(query, reference)
    assert model.registry["fields"]["batch"]["categorical_mapping"] == ["batch0", "batch1", "q_a", "q_b"]
    assert model.summary["n_batch"] == 4 and not model.is_trained
    fresh = _state(SCVI(query, **SMALL))  # what the same seed initialises for the query's shapes
    ref, new = _state(reference), _state(model)
    grown = {k for k in ref if ref[k].shape != new[k].shape}
    assert grown == {f"{DEC0}.0.weight"}
    for k in ref.keys() - grown:
        assert torch.equal(new[k], ref[k]), k
    w = new[f"{DEC0}.0.weight"]  # columns: 3 latent, then batch0, batch1, q_a, q_b
    assert torch.equal(w[:, :5], ref[f"{DEC0}.0.weight"]) and torch.equal(w[:, 5:], fresh[f"{DEC0}.0.weight"][:, 5:])


def test_a_saved_reference_gives_the_same_query_model(reference, query, tmp_path):
    reference.save(tmp_path / "ref")
    a = SCVI.load_query_data(query.copy(), tmp_path / "ref")
    b = SCVI.load_query_data(query.copy(), reference)
    assert a.registry["fields"]["batch"] == b.registry["fields"]["batch"]
    assert all(torch.equal(v, _state(b)[k]) for k, v in _state(a).items())


def test_query_training_moves_only_the_new_batch_columns(reference, query):
    before_ref = _state(reference)
    model = SCVI.load_query_data(query, reference, freeze_batchnorm_decoder=True)
    before = _state(model)
    model.train(max_epochs=3, **QUERY_FIT)
    after = _state(model)
    assert _changed(before, after) == {f"{DEC0}.0.weight"}
    moved = (before[f"{DEC0}.0.weight"] != after[f"{DEC0}.0.weight"]).any(0)
    assert moved.nonzero().ravel().tolist() == [5, 6]  # q_a and q_b, nothing else
    assert not _changed(before_ref, _state(reference))  # the reference model itself is untouched


def test_default_query_training_also_trains_the_decoder_batchnorm(reference, query):
    model = SCVI.load_query_data(query, reference)  # freeze_batchnorm_decoder=False, as scvi-tools
    before = _state(model)
    model.train(max_epochs=2, **QUERY_FIT)
    assert _changed(before, _state(model)) == {
        f"{DEC0}.0.weight", f"{DEC0}.1.weight", f"{DEC0}.1.bias", f"{DEC0}.1.running_mean", f"{DEC0}.1.running_var",
    }


def test_unfrozen_trains_every_weight(reference, query):
    model = SCVI.load_query_data(query, reference, unfrozen=True)
    assert _trainable(model) == {n for n, _ in model.module.named_parameters()}
    before = _state(model)
    model.train(max_epochs=1, **QUERY_FIT)
    changed = _changed(before, _state(model))
    assert {f"{ENC0}.0.weight", "z_encoder.mean_encoder.weight", "px_r", f"{ENC0}.1.running_mean"} <= changed


def test_default_freezing_as_scvi_tools(reference, query):
    model = SCVI.load_query_data(query, reference)
    l_enc = {n for n, _ in model.module.named_parameters() if n.startswith("l_encoder.")}
    assert _trainable(model) == {f"{DEC0}.0.weight", f"{DEC0}.1.weight", f"{DEC0}.1.bias"} | l_enc
    mods = dict(model.module.named_modules())
    assert mods[f"{ENC0}.1"].momentum == 0.0 and mods[f"{DEC0}.1"].momentum == 0.01
    assert mods[f"{ENC0}.4"].p == 0.1


@pytest.mark.parametrize(
    "option, released",
    [
        ({"freeze_expression": False}, {f"{ENC0}.0.weight", f"{ENC0}.0.bias"}),
        ({"freeze_decoder_first_layer": False}, {f"{DEC0}.0.bias"}),
        ({"freeze_batchnorm_encoder": False}, {f"{ENC0}.1.weight", f"{ENC0}.1.bias"}),
        ({"freeze_batchnorm_decoder": True}, set()),
        ({"freeze_dropout": True}, set()),
    ],
)
def test_each_freeze_option(reference, query, option, released):
    default = {f"{DEC0}.0.weight", f"{DEC0}.1.weight", f"{DEC0}.1.bias"}
    model = SCVI.load_query_data(query, reference, **option)
    trainable = {n for n in _trainable(model) if not n.startswith("l_encoder.")}
    mods = dict(model.module.named_modules())
    if option == {"freeze_batchnorm_decoder": True}:
        assert trainable == {f"{DEC0}.0.weight"} and mods[f"{DEC0}.1"].momentum == 0.0
    else:
        assert trainable == default | released
    assert mods[f"{ENC0}.1"].momentum == (0.01 if option == {"freeze_batchnorm_encoder": False} else 0.0)
    assert mods[f"{ENC0}.4"].p == (0.0 if option == {"freeze_dropout": True} else 0.1)


def test_released_first_layers_train_whole(reference, query):
    model = SCVI.load_query_data(
        query, reference, freeze_expression=False, freeze_decoder_first_layer=False, freeze_batchnorm_decoder=True
    )
    before = _state(model)
    model.train(max_epochs=2, **QUERY_FIT)
    after = _state(model)
    assert _changed(before, after) == {f"{ENC0}.0.weight", f"{ENC0}.0.bias", f"{DEC0}.0.weight", f"{DEC0}.0.bias"}
    assert (before[f"{ENC0}.0.weight"] != after[f"{ENC0}.0.weight"]).any(0).all()  # gene columns too
    assert (before[f"{DEC0}.0.weight"][:, :3] != after[f"{DEC0}.0.weight"][:, :3]).any()  # latent columns too


def test_freeze_classifier_applies_to_a_module_classifier():
    class WithClassifier(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.decoder = torch.nn.Linear(3, 3)
            self.classifier = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4), torch.nn.Dropout(0.1))

    frozen = WithClassifier()
    set_params_online_update(frozen, {}, freeze_classifier=True, freeze_dropout=True)
    assert not any(p.requires_grad for p in frozen.parameters())
    assert frozen.classifier[1].momentum == 0.0 and frozen.classifier[2].p == 0.0
    free = WithClassifier()
    set_params_online_update(free, {}, freeze_classifier=False, freeze_dropout=True)
    assert all(p.requires_grad for p in free.classifier.parameters())
    assert free.classifier[1].momentum == 0.1 and free.classifier[2].p == 0.1  # left as it was
    assert not any(p.requires_grad for p in free.decoder.parameters())


@pytest.mark.parametrize("batches", [("batch0", "batch1"), ("batch0",)])
def test_reference_cells_keep_their_latent_in_the_untrained_query_model(batches):
    # Covariates enter the encoder and a categorical covariate grows with the batch: the new
    # columns must sit in their own blocks for reference cells to be encoded as before. With a
    # single reference batch (no batch columns in the reference) the known batch's new column
    # starts at zero.
    reference, ref_adata = _reference(
        batches, setup={"categorical_covariate_keys": ["site"]}, encode_covariates=True, use_observed_lib_size=False
    )
    query = _cells(80, ["q_a", "q_b"], seed=1)
    query.obs["site"] = pd.Categorical(np.where(np.arange(query.n_obs) % 3, "s1", "s_new"))
    model = SCVI.load_query_data(query, reference)
    assert model.registry["fields"]["extra_categorical_covs"]["mappings"]["site"] == ["s0", "s1", "s_new"]
    expected = reference.get_latent_representation(ref_adata.copy())
    mapped = model.get_latent_representation(ref_adata.copy())
    np.testing.assert_allclose(mapped, expected, rtol=1e-5, atol=1e-6)
    if len(batches) == 1:
        w = _state(model)[f"{ENC0}.0.weight"]
        assert torch.all(w[:, 30] == 0) and torch.any(w[:, 31:33] != 0)  # batch0 zero; q_a, q_b fresh


def test_latent_library_prior_keeps_reference_batches_and_adds_the_query_ones(query):
    reference, _ = _reference(use_observed_lib_size=False)
    model = SCVI.load_query_data(query, reference)
    means = model.module.library_log_means
    assert torch.equal(means[:, :2], reference.module.library_log_means)
    np.testing.assert_allclose(means[0, 2:].numpy(), library_size_stats(model.data)[0][0, 2:])


def test_gene_batch_dispersion_learns_the_new_batches_only(query):
    reference, _ = _reference(dispersion="gene-batch")
    model = SCVI.load_query_data(query, reference, freeze_batchnorm_decoder=True)
    before = _state(model)
    model.train(max_epochs=2, **QUERY_FIT)
    after = _state(model)
    assert _changed(before, after) == {f"{DEC0}.0.weight", "px_r"}
    assert torch.equal(before["px_r"][:, :2], after["px_r"][:, :2]) and (before["px_r"][:, 2:] != after["px_r"][:, 2:]).all()


def test_query_model_saves_and_loads_with_its_extended_categories(reference, query, tmp_path):
    model = SCVI.load_query_data(query, reference)
    model.train(max_epochs=1, **QUERY_FIT)
    model.save(tmp_path / "query_model")
    loaded = SCVI.load(tmp_path / "query_model", query.copy())
    assert loaded.registry["fields"]["batch"]["categorical_mapping"] == ["batch0", "batch1", "q_a", "q_b"]
    assert loaded.is_trained
    np.testing.assert_array_equal(loaded.get_latent_representation(), model.get_latent_representation())


def test_query_genes_can_be_subset_in_place(reference, query):
    shuffled = query[:, list(query.var_names[::-1])].copy()
    shuffled.obs["batch"] = query.obs["batch"]
    with pytest.raises(RegistrationError, match="inplace_subset_query_vars=True"):
        SCVI.load_query_data(shuffled, reference)
    model = SCVI.load_query_data(shuffled, reference, inplace_subset_query_vars=True)
    assert list(shuffled.var_names) == list(query.var_names)
    assert model.summary["n_vars"] == 30


def test_query_errors_are_clear(reference, query):
    no_batch = query.copy()
    del no_batch.obs["batch"]
    with pytest.raises(RegistrationError, match=r"no adata.obs\['batch'\] column.*batch_key"):
        SCVI.load_query_data(no_batch, reference)
    other_genes = query.copy()
    other_genes.var_names = [f"ENSG{i}" for i in range(query.n_vars)]
    with pytest.raises(RegistrationError, match="None of the reference's 30 genes"):
        SCVI.load_query_data(other_genes, reference)
    fewer = query[:, 5:].copy()
    with pytest.raises(RegistrationError, match=r"5 missing.*prepare_query_anndata"):
        SCVI.load_query_data(fewer, reference)
    with pytest.raises(ValueError, match="transfer_batch=False.*'q_a', 'q_b'"):
        SCVI.load_query_data(query, reference, transfer_batch=False)
    new_label = query.copy()
    new_label.obs["label"] = new_label.obs["label"].cat.rename_categories({"group0": "novel"})
    with pytest.raises(RegistrationError, match=r"1 label\(s\) the reference model does not know: 'novel'"):
        SCVI.load_query_data(new_label, reference)


def test_an_untrained_reference_is_refused(query):
    ad = _cells(60, ["batch0", "batch1"], seed=0)
    SCVI.setup_anndata(ad, batch_key="batch")
    with pytest.raises(ValueError, match="has not been trained"):
        SCVI.load_query_data(query, SCVI(ad, **SMALL))


def test_a_query_smaller_than_the_default_batch_size_trains(reference):
    # scvi-tools trains a 20-cell query with one minibatch of 18 cells (batch_size=128 by default).
    model = SCVI.load_query_data(_cells(20, ["q_a"], seed=1), reference)
    model.train(max_epochs=2, enable_progress_bar=False, plan_kwargs={"weight_decay": 0.0})
    assert model.is_trained and len(model.history) == 2 and len(model.train_indices) == 18
    assert np.isfinite(model.history["elbo_train"]).all()
    assert model.get_latent_representation().shape == (20, 3)
