"""SCANVI end to end on tiny simulated data: setup, training, predictions, from_scvi_model, save/load."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import torch

import snakevi
from snakevi.data import RegistrationError, simulate
from snakevi.model import SCANVI, SCVI, ModelFileError
from snakevi.module import SCANVAE
from snakevi.train import Callback, SemiSupervisedTrainingPlan, SubSampleLabels

TRAIN = {"batch_size": 64, "enable_progress_bar": False, "check_val_every_n_epoch": 1}
MODEL = {"n_hidden": 32, "n_latent": 5}


def _adata(n_cells=300, seed=1):
    """Simulated groups in two batches; every third cell's label is hidden as 'Unknown' ('truth' keeps it)."""
    ad = simulate(n_cells=n_cells, n_genes=100, n_batches=2, n_groups=3, seed=seed)
    ad.obs["truth"] = ad.obs["label"].astype(str)
    lab = ad.obs["truth"].to_numpy(dtype=object).copy()
    lab[::3] = "Unknown"
    ad.obs["lab"] = pd.Categorical(lab)
    return ad


@pytest.fixture()
def adata():
    ad = _adata()
    SCANVI.setup_anndata(ad, labels_key="lab", unlabeled_category="Unknown", batch_key="batch")
    return ad


@pytest.fixture(scope="module")
def trained():
    ad = _adata()
    SCANVI.setup_anndata(ad, labels_key="lab", unlabeled_category="Unknown", batch_key="batch")
    # Over simulation seeds 1-8 this setting gave 0.95-1.0 accuracy on the hidden cells.
    model = SCANVI(ad, n_hidden=64, n_latent=5)
    model.train(max_epochs=8, plan_kwargs={"lr": 3e-3}, **{**TRAIN, "batch_size": 32})
    return model


def _hidden(ad):
    return (ad.obs["lab"] == "Unknown").to_numpy()


def test_setup_keeps_the_unlabelled_category_last(adata):
    mapping = snakevi.data.get_registry(adata)["fields"]["labels"]["categorical_mapping"]
    assert mapping == ["group2", "group0", "group1", "Unknown"]  # scvi-tools' swap of 'Unknown' and the last
    model = SCANVI(adata, **MODEL)
    assert model.n_labels == 3 and model.labels == ["group2", "group0", "group1"]
    assert model.unlabeled_category == "Unknown"
    assert isinstance(model.module, SCANVAE) and model.module.n_labels == 3
    with pytest.raises(RegistrationError, match="unlabeled_category"):
        SCANVI.setup_anndata(adata, labels_key="lab", unlabeled_category=None)
    SCVI.setup_anndata(adata, batch_key="batch", labels_key="lab")
    with pytest.raises(ValueError, match="SCVI.setup_anndata, not SCANVI"):
        SCANVI(adata)


def test_predictions_on_hidden_cells_are_accurate(trained):
    ad = trained.adata
    hidden = _hidden(ad)
    labels = trained.predict()
    assert labels.shape == (ad.n_obs,) and set(labels) <= set(trained.labels)
    accuracy = (labels[hidden] == ad.obs["truth"].to_numpy()[hidden]).mean()
    assert accuracy > 0.9, accuracy
    soft = trained.predict(soft=True)
    assert isinstance(soft, pd.DataFrame) and list(soft.columns) == trained.labels
    assert list(soft.index) == list(ad.obs_names)
    np.testing.assert_allclose(soft.sum(1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(soft.to_numpy().argmax(1), pd.Index(trained.labels).get_indexer(labels))
    some = trained.predict(indices=[5, 1, 7], soft=True)
    assert list(some.index) == list(ad.obs_names[[5, 1, 7]])
    assert trained.get_latent_representation().shape == (ad.n_obs, 5)


def test_history_has_the_classification_metrics(trained):
    h = trained.history
    for mode in ("train", "validation"):
        for name in ("classification_loss", "accuracy", "f1_score", "calibration_error"):
            assert f"{mode}_{name}" in h.columns
    assert isinstance(trained.trainer.plan, SemiSupervisedTrainingPlan)
    assert trained.trainer.plan.loss_kwargs["classification_ratio"] == 50
    assert sum(isinstance(c, SubSampleLabels) for c in trained.trainer.callbacks) == 1


def test_subsample_labels_is_kept_with_user_callbacks(adata):
    # scvi-tools 1.4.2 drops it when callbacks are given (a discarded list concatenation).
    class Mine(Callback):
        pass

    model = SCANVI(adata, **MODEL)
    model.train(max_epochs=1, n_samples_per_label=10, callbacks=[Mine()], **TRAIN)
    kinds = [type(c) for c in model.trainer.callbacks]
    assert Mine in kinds and kinds.count(SubSampleLabels) == 1
    assert model.trainer.train_loader.n_samples_per_label == 10
    assert model.trainer.train_loader.labelled_indices.size == 30  # 10 for each of the 3 classes
    model.train(max_epochs=1, callbacks=[SubSampleLabels()], **TRAIN)
    assert [type(c) for c in model.trainer.callbacks].count(SubSampleLabels) == 1


def test_split_keeps_labelled_share_and_train_size_is_explicit(adata):
    model = SCANVI(adata, **MODEL)
    model.train(max_epochs=1, **TRAIN)
    hidden = _hidden(adata)
    n_lab, n_unlab = (~hidden).sum(), hidden.sum()
    assert (~hidden[model.train_indices]).sum() == int(np.ceil(0.9 * n_lab))
    assert hidden[model.train_indices].sum() == int(np.ceil(0.9 * n_unlab))


def test_same_seed_same_model_and_device_gathering_changes_nothing(adata):
    runs = []
    for on_device in (False, True):
        model = SCANVI(adata, **MODEL, seed=3)
        model.train(max_epochs=2, accelerator="cpu", data_on_device=on_device, n_samples_per_label=20, **TRAIN)
        runs.append(model)
    pd.testing.assert_frame_equal(runs[0].history, runs[1].history)
    assert all(torch.equal(a, b) for a, b in zip(runs[0].module.state_dict().values(),
                                                 runs[1].module.state_dict().values()))


@pytest.fixture(scope="module")
def scvi_model():
    ad = _adata()
    SCVI.setup_anndata(ad, batch_key="batch", labels_key="lab")
    model = SCVI(ad, **MODEL)
    model.train(max_epochs=2, **TRAIN)
    return model


def test_from_scvi_model_copies_the_weights(scvi_model):
    with pytest.warns(UserWarning, match="Ignoring n_latent=7"):
        model = SCANVI.from_scvi_model(scvi_model, "Unknown", n_latent=7, linear_classifier=True)
    assert model.was_pretrained and model.module.n_latent == 5
    assert isinstance(model.module.classifier.classifier[0], torch.nn.Linear)
    scvi_state = scvi_model.module.state_dict()
    scanvi_state = model.module.state_dict()
    assert all(torch.equal(scanvi_state[k], v) for k, v in scvi_state.items())
    np.testing.assert_array_equal(model.get_latent_representation(), scvi_model.get_latent_representation())


@pytest.mark.parametrize(
    "n_obs, pretrained, scratch",
    [(300, 10, 400), (100_000, 10, 80), (400_000, 7, 20), (1_000_000, 3, 8), (2_000_000, 2, 4)],
)
def test_pretrained_epoch_rule(n_obs, pretrained, scratch, scvi_model):
    # h = max(1, min(round(20000 / n * 400), 400)); pretrained: min(10, max(2, round(h / 3))).
    model = SCANVI.from_scvi_model(scvi_model, "Unknown")
    assert model._default_max_epochs(n_obs) == pretrained
    model.was_pretrained = False
    assert model._default_max_epochs(n_obs) == scratch


def test_pretrained_model_trains_for_the_short_default(scvi_model):
    model = SCANVI.from_scvi_model(scvi_model, "Unknown")
    model.train(**TRAIN)  # 300 cells: h = 400, so min(10, max(2, 133)) = 10 epochs
    assert len(model.history) == 10


def test_from_scvi_model_refusals(scvi_model):
    ad = scvi_model.adata.copy()
    SCVI.setup_anndata(ad, batch_key="batch", labels_key="lab")
    untrained = SCVI(ad, **MODEL)
    with pytest.raises(RuntimeError, match="has not been trained"):
        SCANVI.from_scvi_model(untrained, "Unknown")
    with pytest.raises(ValueError, match="labels_key='other'"):
        SCANVI.from_scvi_model(scvi_model, "Unknown", labels_key="other")


def test_save_load_round_trip_and_model_kind_checks(trained, tmp_path, scvi_model):
    trained.save(tmp_path / "scanvi")
    loaded = SCANVI.load(tmp_path / "scanvi", trained.adata)
    np.testing.assert_array_equal(loaded.predict(), trained.predict())
    pd.testing.assert_frame_equal(loaded.predict(soft=True), trained.predict(soft=True))
    np.testing.assert_array_equal(loaded.get_latent_representation(), trained.get_latent_representation())
    with pytest.raises(ModelFileError, match="holds a SCANVI model; load it with snakevi.model.SCANVI.load"):
        SCVI.load(tmp_path / "scanvi", trained.adata)
    scvi_model.save(tmp_path / "scvi")
    with pytest.raises(ModelFileError, match="holds a SCVI model; load it with snakevi.model.SCVI.load"):
        SCANVI.load(tmp_path / "scvi", trained.adata)


def test_top_level_exports():
    assert snakevi.SCANVI is SCANVI and snakevi.SCVI is SCVI
    # Every registered class, without a list of names in snakevi/__init__.py to keep up to date.
    from snakevi.model import MODELS

    assert all(getattr(snakevi, cls.__name__) is cls for cls in MODELS.values())
    with pytest.raises(AttributeError, match="no attribute 'Foo'"):
        snakevi.Foo  # noqa: B018


def test_scvi_adversarial_training(scvi_model):
    from snakevi.train import AdversarialTrainingPlan

    ad = scvi_model.adata.copy()
    SCVI.setup_anndata(ad, batch_key="batch")
    runs = []
    for _ in range(2):
        model = SCVI(ad, **MODEL)
        model.train(max_epochs=2, adversarial_classifier=True, **TRAIN)
        runs.append(model)
    assert isinstance(runs[0].trainer.plan, AdversarialTrainingPlan) and runs[0].trainer.plan.has_adversary
    pd.testing.assert_frame_equal(runs[0].history, runs[1].history)  # the classifier init is seeded too
    via_plan = SCVI(ad, **MODEL).train(max_epochs=1, plan_kwargs={"adversarial_classifier": True}, **TRAIN)
    assert isinstance(via_plan.trainer.plan, AdversarialTrainingPlan)
    SCVI.setup_anndata(ad)  # one batch
    with pytest.warns(UserWarning, match="Disabling the adversarial classifier"):
        SCVI(ad, **MODEL).train(max_epochs=1, adversarial_classifier=True, **TRAIN)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        plain = SCVI(ad, **MODEL).train(max_epochs=1, **TRAIN)
    assert type(plain.trainer.plan).__name__ == "TrainingPlan"


def test_from_scvi_model_on_prepared_arrays_uses_the_registered_unlabeled_category():
    from snakevi.data import CellData, setup_anndata

    ad = _adata()
    setup_anndata(ad, batch_key="batch", labels_key="lab", unlabeled_category="Unknown")
    data = CellData.from_anndata(ad)  # what the workflow's train step holds: arrays, no obs columns
    scvi = SCVI(data, **MODEL).train(max_epochs=1, **TRAIN)
    model = SCANVI.from_scvi_model(scvi, "Unknown")
    assert model.adata is None and model.registry["model_name"] == "SCANVI"
    assert model.unlabeled_category == "Unknown" and scvi.registry["model_name"] == "SCVI"  # the SCVI one is untouched
    np.testing.assert_array_equal(model.get_latent_representation(), scvi.get_latent_representation())
    with pytest.raises(ValueError, match="unlabeled category 'Unknown', not 'missing'"):
        SCANVI.from_scvi_model(scvi, "missing")
