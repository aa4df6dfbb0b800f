"""The grouped `train` section: what goes where, what is refused, and the fingerprint of the flat view."""

from __future__ import annotations

import pytest
import yaml

from snakevi.model import MODELS, SCANVI, SCVI, LinearSCVI
from snakevi.model.phases import check_train_config, first_phase_kwargs, flat_view, plan_arguments, top_level_keys
from snakevi.model.scanvi_training import scanvi_phases

REPO_SCHEMA = __import__("pathlib").Path(__file__).resolve().parents[2] / "workflow" / "schemas" / "config.schema.yaml"
GROUPED = {"max_epochs": 7, "adversarial": True, "check_val_every_n_epoch": 1,
           "plan": {"lr": 0.01, "n_epochs_kl_warmup": 3, "weight_decay": 0.0},
           "scanvi": {"max_epochs": 2, "classification_ratio": 20, "n_samples_per_label": 5}}
#: The same run in the flat section of before (what its fingerprint was computed on).
FLAT = {"max_epochs": 7, "adversarial": True, "check_val_every_n_epoch": 1, "lr": 0.01, "n_epochs_kl_warmup": 3,
        "weight_decay": 0.0, "scanvi_max_epochs": 2, "classification_ratio": 20, "n_samples_per_label": 5}


@pytest.mark.parametrize("cls", [SCVI, SCANVI, LinearSCVI])
def test_the_flat_view_is_the_flat_section_of_before(cls):
    assert flat_view(cls, GROUPED) == FLAT


def test_scanvi_declares_two_phases_reading_its_section():
    first, second = scanvi_phases(SCANVI, None, seed=0, model_params={}, train_params=GROUPED)
    assert (first.name, second.name) == ("scvi", "scanvi")
    assert first.train_kwargs == {"max_epochs": 7, "adversarial_classifier": True, "check_val_every_n_epoch": 1}
    assert first.plan_kwargs == GROUPED["plan"]
    assert second.train_kwargs == {"max_epochs": 2, "n_samples_per_label": 5, "check_val_every_n_epoch": 1}
    # The optimiser's settings carry over, scVI's KL warm-up does not.
    assert second.plan_kwargs == {"lr": 0.01, "weight_decay": 0.0, "classification_ratio": 20.0}


def test_single_phase_classes_ignore_the_scanvi_section():
    assert first_phase_kwargs(GROUPED) == {"max_epochs": 7, "adversarial_classifier": True,
                                          "check_val_every_n_epoch": 1}
    check_train_config(SCVI, GROUPED)


@pytest.mark.parametrize(("params", "named"), [
    ({"max_epoch": 3}, "['max_epoch']"),
    ({"lr": 0.01}, "['lr']"),  # the flat spelling: it moved to plan
    ({"plan": {"lrr": 1}}, "['plan.lrr']"),
    ({"scanvi": {"epochs": 1}}, "['scanvi.epochs']"),
])
def test_unknown_keys_are_refused_naming_them(params, named):
    with pytest.raises(ValueError, match=rf"Unknown training parameter\(s\) {__import__('re').escape(named)}; known: "
                                         r".*'max_epochs'.*'plan.lr'.*Check the spelling"):
        check_train_config(SCVI, params)


def test_the_schema_and_the_library_agree():
    run = yaml.safe_load(REPO_SCHEMA.read_text())["$defs"]["run"]["properties"]
    assert run["model_class"]["enum"] == list(MODELS)
    assert run["model_class"]["x-latent-key"] == {name: cls.latent_key for name, cls in MODELS.items()}
    train = run["train"]["properties"]
    assert set(train["plan"]["properties"]) <= plan_arguments()
    assert set(train["scanvi"]["properties"]) == set(SCANVI.phase_sections["scanvi"])
    # The step's own options (how often to checkpoint; how many processes and how they start; the
    # trackers, handed over beside the section).
    top = set(train) - {"plan", "scanvi", "checkpoint_every_seconds", "devices", "nodes", "launcher", "logger"}
    assert top <= top_level_keys(SCVI) and top <= top_level_keys(LinearSCVI)
