"""Classifier: scvi-tools' layout, logits or probabilities, the single-Linear variant."""

from __future__ import annotations

import pytest
import torch
from module_testdata import assert_close, one_thread  # noqa: F401  (one_thread: fixture, used through pytestmark)

from snakevi.module import Classifier

pytestmark = pytest.mark.usefixtures("one_thread")


def test_default_returns_probabilities_with_scvi_tools_keys():
    torch.manual_seed(0)
    clf = Classifier(6, n_hidden=8, n_labels=3).eval()
    out = clf(torch.randn(5, 6))
    assert out.shape == (5, 3)
    assert_close(out.sum(-1), torch.ones(5))
    keys = set(clf.state_dict())
    assert "classifier.0.fc_layers.Layer 0.0.weight" in keys and "classifier.1.weight" in keys
    assert isinstance(clf.classifier[-1], torch.nn.Softmax)


def test_logits_are_the_linear_output_before_softmax():
    torch.manual_seed(0)
    clf = Classifier(6, n_hidden=8, n_labels=3, n_layers=2, logits=True).eval()
    x = torch.randn(4, 6)
    hidden = clf.classifier[0](x)
    assert_close(clf(x), clf.classifier[1](hidden))
    assert len(clf.classifier[0].fc_layers) == 2


@pytest.mark.parametrize("kwargs", [{"n_hidden": 0}, {"n_layers": 0}])
def test_no_hidden_layer_means_one_linear(kwargs):
    clf = Classifier(6, n_labels=4, logits=True, **kwargs)
    assert len(clf.classifier) == 1 and isinstance(clf.classifier[0], torch.nn.Linear)
    assert clf.classifier[0].in_features == 6


def test_norm_and_activation_options_reach_the_hidden_layers():
    clf = Classifier(6, n_hidden=8, n_labels=2, use_batch_norm=False, use_layer_norm=True, activation_fn=torch.nn.Tanh)
    block = clf.classifier[0].fc_layers[0]
    assert block[1] is None and isinstance(block[2], torch.nn.LayerNorm) and isinstance(block[3], torch.nn.Tanh)
    with pytest.raises(ValueError, match="n_labels"):
        Classifier(6, n_labels=0)
