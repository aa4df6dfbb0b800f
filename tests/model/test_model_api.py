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
