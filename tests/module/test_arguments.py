"""Constructor arguments of the modules (and so of the models) are checked, naming argument, value, range."""

from __future__ import annotations

import numpy as np
import pytest
from module_testdata import N_BATCH, N_GENES

from snakevi.module import SCANVAE, VAE, Classifier

INT = "expected an integer >= {}."
RATE = "expected a number in [0, 1)."
FLAG = "expected True or False."

# (argument, bad value, the end of the message)
VAE_CASES = [
    ("n_latent", 0, INT.format(1)),
    ("n_latent", -3, INT.format(1)),
    ("n_latent", 10.0, INT.format(1)),
    ("n_latent", True, INT.format(1)),
    ("n_hidden", 0, INT.format(1)),
    ("n_layers", 0, INT.format(1)),
    ("n_input", 0, INT.format(1)),
    ("n_batch", -1, INT.format(0)),
    ("n_labels", -1, INT.format(0)),
    ("n_continuous_cov", -2, INT.format(0)),
    ("dropout_rate", 1.0, RATE),
    ("dropout_rate", -0.1, RATE),
    ("dropout_rate", "0.1", RATE),
    ("log_variational", "False", FLAG),
    ("encode_covariates", 1, FLAG),
    ("use_observed_lib_size", None, FLAG),
]


def _vae(**kwargs):
    return VAE(**{"n_input": N_GENES, "n_batch": N_BATCH, "n_hidden": 8, "n_latent": 2, **kwargs})


@pytest.mark.parametrize(("argument", "value", "expected"), VAE_CASES)
def test_vae_refuses_bad_arguments(argument, value, expected):
    with pytest.raises(ValueError) as err:
        _vae(**{argument: value})
    assert str(err.value) == f"VAE: {argument}={value!r} is not valid; {expected}"


def test_categorical_covariates_need_a_category_each():
    with pytest.raises(ValueError, match=r"VAE: n_cats_per_cov\[1\]=0 is not valid; expected an integer >= 1"):
        _vae(n_cats_per_cov=[3, 0])


def test_numpy_integers_and_good_values_are_accepted():
    module = _vae(n_latent=np.int64(3), n_layers=2, dropout_rate=0.0, n_cats_per_cov=[np.int64(2)])
    assert module.n_latent == 3


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_latent": 0}, "VAE: n_latent=0 is not valid; " + INT.format(1)),
        ({"n_labels": 0}, "SCANVAE: n_labels=0"),
        ({"linear_classifier": "yes"}, "SCANVAE: linear_classifier='yes' is not valid; " + FLAG),
        ({"classifier_parameters": {"dropout_rate": 1.5}}, "Classifier: dropout_rate=1.5 is not valid; " + RATE),
        ({"classifier_parameters": {"n_layers": -1}}, "Classifier: n_layers=-1 is not valid; " + INT.format(0)),
        ({"classifier_parameters": [("n_layers", 2)]}, "SCANVAE: classifier_parameters=[('n_layers', 2)] is not valid; "
                                                       "expected a dict of Classifier arguments or None."),
        ({"y_prior": [0.5, -0.1, 0.6]}, "SCANVAE: y_prior=[0.5, -0.1, 0.6] is not valid; expected finite "
                                        "probabilities >= 0 with a positive sum, one per label (3)."),
    ],
)
def test_scanvae_and_classifier_refuse_bad_arguments(kwargs, message):
    params = {"n_input": N_GENES, "n_batch": N_BATCH, "n_labels": 3, "n_hidden": 8, "n_latent": 2, **kwargs}
    with pytest.raises(ValueError) as err:
        SCANVAE(**params)
    assert str(err.value).startswith(message), str(err.value)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_input": 0}, "Classifier: n_input=0 is not valid; " + INT.format(1)),
        ({"n_hidden": -1}, "Classifier: n_hidden=-1 is not valid; " + INT.format(0)),
        ({"dropout_rate": 2}, "Classifier: dropout_rate=2 is not valid; " + RATE),
        ({"logits": "True"}, "Classifier: logits='True' is not valid; " + FLAG),
    ],
)
def test_classifier_refuses_bad_arguments(kwargs, message):
    with pytest.raises(ValueError) as err:
        Classifier(**{"n_input": 4, "n_labels": 2, **kwargs})
    assert str(err.value) == message
