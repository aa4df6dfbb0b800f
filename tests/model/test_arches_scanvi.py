"""Reference mapping with SCANVI: query labels, the frozen classifier and z2/z1 layers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from snakevi.data import simulate
from snakevi.model import SCANVI
from snakevi.model.arches import ArchesMixin

QuerySCANVI = SCANVI
assert issubclass(SCANVI, ArchesMixin)
SMALL = dict(n_hidden=16, n_latent=3)
FIT = dict(batch_size=32, enable_progress_bar=False)


def _cells(n_cells, batches, seed):
    ad = simulate(n_cells=n_cells, n_genes=30, n_batches=len(batches), n_groups=3, seed=seed)
    ad.obs["batch"] = ad.obs["batch"].cat.rename_categories(batches)
    ad.obs["label"] = ad.obs["label"].cat.add_categories("Unknown")
    return ad


@pytest.fixture(scope="module")
def reference():
    ad = _cells(160, ["batch0", "batch1"], seed=0)
    ad.obs.loc[ad.obs_names[::4], "label"] = "Unknown"
    QuerySCANVI.setup_anndata(ad, labels_key="label", unlabeled_category="Unknown", batch_key="batch")
    return QuerySCANVI(ad, **SMALL).train(max_epochs=1, **FIT)


@pytest.fixture()
def query():
    ad = _cells(100, ["q_a", "q_b"], seed=1)
    ad.obs["label"] = ad.obs["label"].cat.add_categories("novel")
    ad.obs.loc[ad.obs_names[:10], "label"] = "novel"
    return ad


def _state(model):
    return {k: v.detach().clone() for k, v in model.module.state_dict().items()}


def test_unknown_query_labels_become_unlabeled_and_labels_do_not_grow(reference, query):
    with pytest.warns(UserWarning, match=r"10 cell\(s\).*'novel'.*'Unknown'"):
        model = QuerySCANVI.load_query_data(query, reference)
    assert model.registry["fields"]["labels"]["categorical_mapping"] == ["group0", "group1", "group2", "Unknown"]
    assert model.registry["fields"]["batch"]["categorical_mapping"] == ["batch0", "batch1", "q_a", "q_b"]
    assert (query.obs["label"][:10] == "Unknown").all()
    assert model.predict().shape == (100,)


def test_classifier_and_z2_layers_stay_frozen_through_query_training(reference, query):
    with pytest.warns(UserWarning, match="novel"):
        model = QuerySCANVI.load_query_data(query, reference, freeze_batchnorm_decoder=True)
    frozen = ("classifier.", "encoder_z2_z1.", "decoder_z1_z2.")
    assert not any(p.requires_grad for n, p in model.module.named_parameters() if n.startswith(frozen))
    before = _state(model)
    model.train(max_epochs=2, plan_kwargs={"weight_decay": 0.0}, **FIT)
    after = _state(model)
    changed = {k for k in before if not k.endswith("num_batches_tracked") and not torch.equal(before[k], after[k])}
    assert changed == {"decoder.px_decoder.fc_layers.Layer 0.0.weight"}
    np.testing.assert_array_equal(
        model.predict(reference.adata.copy(), soft=True).to_numpy(), reference.predict(soft=True).to_numpy()
    )


def test_freeze_classifier_false_trains_the_classifier(reference, query):
    with pytest.warns(UserWarning, match="novel"):
        model = QuerySCANVI.load_query_data(query, reference, freeze_classifier=False)
    params = dict(model.module.named_parameters())
    assert all(p.requires_grad for n, p in params.items() if n.startswith("classifier."))
    assert not any(p.requires_grad for n, p in params.items() if n.startswith(("encoder_z2_z1.", "decoder_z1_z2.")))


def test_a_query_smaller_than_the_default_batch_size_trains(reference):
    # 15 labelled + 5 unlabelled cells -> 14 + 5 training cells: one minibatch (scvi-tools).
    query = _cells(20, ["q_a"], seed=1)
    query.obs.loc[query.obs_names[:5], "label"] = "Unknown"
    model = QuerySCANVI.load_query_data(query, reference)
    model.train(max_epochs=2, enable_progress_bar=False, plan_kwargs={"weight_decay": 0.0})
    assert model.is_trained and len(model.history) == 2 and len(model.train_indices) == 19
    assert np.isfinite(model.history["elbo_train"]).all()
    assert model.predict().shape == (20,)
