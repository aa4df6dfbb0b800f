"""Where scvi-tools users trip: constructor checks, continued training, the get_* signatures."""

from __future__ import annotations

import pytest

from snakevi.data import simulate
from snakevi.model import SCANVI, SCVI

SMALL = dict(n_hidden=16, n_latent=3)
QUIET = dict(batch_size=32, enable_progress_bar=False)


def _scvi_adata(n_cells=120):
    ad = simulate(n_cells=n_cells, n_genes=30, n_batches=2, n_groups=3, seed=0)
    SCVI.setup_anndata(ad, batch_key="batch", labels_key="label")
    return ad


def _scanvi_adata(n_cells=120):
    ad = simulate(n_cells=n_cells, n_genes=30, n_batches=2, n_groups=3, seed=0)
    ad.obs["label"] = ad.obs["label"].cat.add_categories("Unknown")
    ad.obs.loc[ad.obs_names[::4], "label"] = "Unknown"
    SCANVI.setup_anndata(ad, labels_key="label", unlabeled_category="Unknown", batch_key="batch")
    return ad


# ---- constructor arguments ------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_latent": 0}, "VAE: n_latent=0 is not valid; expected an integer >= 1."),
        ({"n_latent": -3}, "VAE: n_latent=-3 is not valid; expected an integer >= 1."),
        ({"n_hidden": 0}, "VAE: n_hidden=0 is not valid; expected an integer >= 1."),
        ({"n_layers": 2.5}, "VAE: n_layers=2.5 is not valid; expected an integer >= 1."),
        ({"dropout_rate": 1.0}, "VAE: dropout_rate=1.0 is not valid; expected a number in [0, 1)."),
        ({"gene_likelihood": "normal"}, "VAE: gene_likelihood='normal' is not valid; choose one of 'zinb', 'nb', 'poisson'."),
        ({"latent_distribution": "LN"}, "VAE: latent_distribution='LN' is not valid; choose one of 'normal', 'ln'."),
    ],
)
def test_scvi_constructor_refuses_bad_arguments(kwargs, message):
    with pytest.raises(ValueError) as err:
        SCVI(_scvi_adata(), **kwargs)
    assert str(err.value) == message


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_latent": 0}, "VAE: n_latent=0 is not valid"),
        ({"dispersion": "gene-cells"}, "VAE: dispersion='gene-cells' is not valid"),
        ({"linear_classifier": "no"}, "SCANVAE: linear_classifier='no' is not valid; expected True or False."),
        ({"classifier_parameters": {"n_hidden": -1}}, "Classifier: n_hidden=-1 is not valid; expected an integer >= 0."),
    ],
)
def test_scanvi_constructor_refuses_bad_arguments(kwargs, message):
    with pytest.raises(ValueError) as err:
        SCANVI(_scanvi_adata(), **kwargs)
    assert str(err.value).startswith(message), str(err.value)


# ---- continued training -----------------------------------------------------------------------
class _AtFitStart:
    """Records the weights and the optimizer state when a fit starts."""

    def __init__(self):
        self.weights, self.optimizer_state = [], []

    def on_fit_start(self, trainer, plan):
        self.weights.append({k: v.detach().clone() for k, v in plan.module.state_dict().items()})
        self.optimizer_state.append(dict(trainer.optimizer.state))


def _rows(model):
    return [{k: v for k, v in row.items() if k != "epoch"} for row in model.history_records]


@pytest.mark.parametrize("model_cls, make", [(SCVI, _scvi_adata), (SCANVI, _scanvi_adata)])
def test_a_second_train_call_extends_the_history(model_cls, make):
    import torch

    model = model_cls(make(), **SMALL)
    probe = _AtFitStart()
    model.train(max_epochs=2, callbacks=[probe], **QUIET)
    first = model.history_records
    after_first = {k: v.detach().clone() for k, v in model.module.state_dict().items()}
    model.train(max_epochs=3, callbacks=[probe], **QUIET)
    assert len(model.history) == 5 and list(model.history.index) == [0, 1, 2, 3, 4]
    assert model.history_records[:2] == first
    # As scvi-tools: the second call starts from the trained weights with a new optimizer.
    assert all(torch.equal(probe.weights[1][k], after_first[k]) for k in after_first)
    assert probe.optimizer_state[1] == {}


def test_continued_history_survives_save_and_load_and_training_again(tmp_path):
    adata = _scvi_adata()
    model = SCVI(adata, **SMALL).train(max_epochs=2, **QUIET)
    model.save(tmp_path / "m")
    loaded = SCVI.load(tmp_path / "m", adata)
    loaded.train(max_epochs=1, **QUIET)
    assert list(loaded.history.index) == [0, 1, 2]
    loaded.save(tmp_path / "m2")
    assert list(SCVI.load(tmp_path / "m2", adata).history.index) == [0, 1, 2]


def test_resuming_the_last_fit_from_its_checkpoint_does_not_count_it_twice(tmp_path):
    from snakevi.train import ModelCheckpoint

    adata = _scvi_adata()
    straight = SCVI(adata, **SMALL).train(max_epochs=4, callbacks=[ModelCheckpoint(tmp_path / "a")], **QUIET)
    model = SCVI(adata, **SMALL).train(max_epochs=2, callbacks=[ModelCheckpoint(tmp_path / "b")], **QUIET)
    model.train(max_epochs=4, callbacks=[ModelCheckpoint(tmp_path / "b")], ckpt_path=tmp_path / "b" / "last.ckpt",
                **QUIET)
    assert list(model.history.index) == [0, 1, 2, 3]
    assert _rows(model) == _rows(straight)
    # A fresh model resuming the same checkpoint gets the same history.
    fresh = SCVI(adata, **SMALL).train(max_epochs=4, callbacks=[ModelCheckpoint(tmp_path / "c")],
                                       ckpt_path=tmp_path / "b" / "last.ckpt", **QUIET)
    assert _rows(fresh) == _rows(straight)
