"""One place per default: the config schema's defaults agree with the library's signatures.

The workflow's defaults live in workflow/schemas/config.schema.yaml, the library's in its
function and constructor signatures (and :data:`snakevi.model.arches.QUERY_TRAIN_DEFAULTS` for
query training). These tests read both and compare them, so that a default changed in one
place and not the other fails here, naming the key. A key the tables below do not know fails
too: map it to its library argument (or, when the workflow differs on purpose, add it to
``ON_PURPOSE`` with the reason).

Not compared: ``simulate`` (the demo dataset's size), ``resources`` (the cluster's), and the
run's ``dataset``/``model_class``/``seed`` bookkeeping keys.
"""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest
import yaml

from snakevi.data import DataSplitter, SemiSupervisedDataSplitter
from snakevi.model import SCANVI, SCVI
from snakevi.model.arches import QUERY_TRAIN_DEFAULTS
from snakevi.model.base import BaseModelClass
from snakevi.module import SCANVAE, VAE
from snakevi.steps.export import export
from snakevi.steps.map_query import map_query
from snakevi.steps.prepare import prepare
from snakevi.steps.register import register
from snakevi.steps.train import train as train_step
from snakevi.train import SemiSupervisedTrainingPlan, Trainer, TrainingPlan

SCHEMA = yaml.safe_load((Path(__file__).parents[2] / "workflow" / "schemas" / "config.schema.yaml").read_text())
RUN = SCHEMA["$defs"]["run"]["properties"]
QUERY = SCHEMA["$defs"]["query"]["properties"]

#: Schema key (dotted below its section, or just its name) -> the library arguments it feeds.
#: A target is a callable (same argument name) or ``(callable, argument name)``.
TABLES = {
    "setup": {name: [register] for name in RUN["setup"]["properties"]},
    "split": {name: [prepare, DataSplitter.__init__, BaseModelClass.train] for name in RUN["split"]["properties"]},
    "model": {},  # filled below: SCVI's signature, else the VAE's (SCVI passes the rest to it)
    "train": {
        **{name: [TrainingPlan.__init__] for name in (
            "lr", "weight_decay", "eps", "optimizer", "n_epochs_kl_warmup", "n_steps_kl_warmup", "max_kl_weight",
            "min_kl_weight", "reduce_lr_on_plateau", "lr_factor", "lr_patience", "lr_threshold", "lr_min",
            "lr_scheduler_metric")},
        **{name: [BaseModelClass.train] for name in (
            "max_epochs", "early_stopping", "early_stopping_monitor", "early_stopping_patience",
            "early_stopping_min_delta", "early_stopping_warmup_epochs", "early_stopping_mode",
            "check_val_every_n_epoch", "gradient_clip_val", "learning_rate_monitor")},
        **{name: [BaseModelClass.train, Trainer.__init__] for name in (
            "precision", "accumulate_grad_batches", "max_steps", "limit_train_batches", "limit_val_batches",
            "log_every_n_steps")},
        "logger": [train_step],
        "checkpoint_every_seconds": [train_step],
        "devices": [train_step], "nodes": [train_step], "launcher": [train_step],
        "adversarial": [(SCVI.train, "adversarial_classifier")],
        "scanvi_max_epochs": [(SCANVI.train, "max_epochs")],
        "scanvi.max_epochs": [(SCANVI.train, "max_epochs")],
        "classification_ratio": [SemiSupervisedTrainingPlan.__init__],
        "n_samples_per_label": [SCANVI.train],
    },
    "export": {name: [export] for name in ("latent_key", "predicted_key", "normalized_layer", "library_size",
                                           "full_anndata")},
    "query": {name: [map_query] for name in ("seed", "use_labels", "unfrozen")},
    "query.train": {
        "max_epochs": [QUERY_TRAIN_DEFAULTS], "weight_decay": [QUERY_TRAIN_DEFAULTS],
        "lr": [TrainingPlan.__init__], "batch_size": [BaseModelClass.train],
    },
    "query.export": {name: [map_query] for name in ("latent_key", "predicted_key")},
}

#: Where the workflow's default differs from the library's on purpose: (section, key) -> (library default, why).
ON_PURPOSE = {
    ("train", "check_val_every_n_epoch"): (None, "the workflow validates every epoch so history.csv has the "
                                                "validation metrics; the library only when something needs them"),
}

#: Keys the schema gives no default on purpose: left out, a key is not in the run's ``train``
#: section, so not in its fingerprint, and the library's default applies. Keys added after runs
#: existed are such: a schema default would have changed every existing run's fingerprint (and
#: moved its checkpoints aside).
NO_SCHEMA_DEFAULT = {
    ("train", name) for name in ("precision", "accumulate_grad_batches", "max_steps", "limit_train_batches",
                                 "limit_val_batches", "log_every_n_steps", "logger")
}

#: Keys that choose which rules run and feed no library argument: (section, key) -> why.
WORKFLOW_ONLY = {
    ("export", "scvi_tools"): "adds the export_scvi_tools rule (snakevi export-scvi-tools), which has no options",
}


def leaves(section: dict, prefix: str = "") -> dict[str, object]:
    """``{dotted key: default}`` of a schema object, looking into nested groups (``train.plan.lr``)."""
    out = {}
    for name, spec in section.get("properties", {}).items():
        if spec.get("type") == "object" and "properties" in spec:
            out.update(leaves(spec, f"{prefix}{name}."))
        else:
            out[f"{prefix}{name}"] = spec.get("default", inspect.Parameter.empty)
    return out


def library_default(target, name: str):
    if isinstance(target, tuple):
        target, name = target
    if isinstance(target, dict):
        return target[name]
    param = inspect.signature(target).parameters.get(name)
    assert param is not None, f"{target.__qualname__} has no argument {name!r}"
    return param.default


def _same(schema_value, library_value) -> bool:
    # The schema writes "no keys" as [] and "none" as null; the library takes None for both.
    if schema_value == [] and library_value is None:
        return True
    return type(schema_value) is type(library_value) and schema_value == library_value or (
        isinstance(schema_value, (int, float)) and isinstance(library_value, (int, float))
        and not isinstance(schema_value, bool) and not isinstance(library_value, bool)
        and float(schema_value) == float(library_value))


def _targets(table: dict, key: str):
    for candidate in (key, key.rsplit(".", 1)[-1]):  # "plan.lr" finds "lr"; "scanvi.max_epochs" is its own
        if candidate in table:
            return table[candidate]
    return None


SECTIONS = {
    "setup": RUN["setup"], "split": RUN["split"], "model": RUN["model"], "train": RUN["train"],
    "export": RUN["export"], "query.train": QUERY["train"], "query.export": QUERY["export"],
    "query": {"properties": {k: QUERY[k] for k in TABLES["query"]}},
}


def _model_targets(key: str):
    name = key.rsplit(".", 1)[-1]
    return [SCVI.__init__] if name in inspect.signature(SCVI.__init__).parameters else [VAE.__init__]


@pytest.mark.parametrize("section", list(SECTIONS))
def test_schema_defaults_are_the_librarys(section):
    wrong, unknown = [], []
    for key, default in leaves(SECTIONS[section]).items():
        if (section, key) in WORKFLOW_ONLY:
            continue
        targets = _model_targets(key) if section == "model" else _targets(TABLES[section], key)
        if targets is None:
            unknown.append(key)
            continue
        for target in targets:
            name = key.rsplit(".", 1)[-1]
            got = library_default(target, name)
            func = target[0] if isinstance(target, tuple) else target
            where = getattr(func, "__qualname__", "QUERY_TRAIN_DEFAULTS")
            if (section, name) in ON_PURPOSE:
                expected, _why = ON_PURPOSE[(section, name)]
                if not _same(expected, got):
                    wrong.append(f"{section}.{key}: {where} now defaults to {got!r}; ON_PURPOSE says {expected!r}")
            elif (section, key) in NO_SCHEMA_DEFAULT:
                if default is not inspect.Parameter.empty:
                    wrong.append(f"{section}.{key}: NO_SCHEMA_DEFAULT, but the schema gives {default!r}")
            elif not _same(default, got):
                wrong.append(f"{section}.{key}: schema default {default!r}, {where} default {got!r}")
    assert not unknown, f"schema keys this test does not map to a library argument: {unknown}"
    assert not wrong, "defaults disagree:\n" + "\n".join(wrong)


def _shared(a, b) -> list[tuple[str, object, object]]:
    pa, pb = inspect.signature(a).parameters, inspect.signature(b).parameters
    return [(n, pa[n].default, pb[n].default) for n in pa if n in pb and pa[n].default is not inspect.Parameter.empty
            and pb[n].default is not inspect.Parameter.empty]


@pytest.mark.parametrize("a, b", [
    (SCVI.__init__, VAE.__init__), (SCANVI.__init__, SCANVAE.__init__), (SCANVI.__init__, SCVI.__init__),
    (VAE.__init__, SCANVAE.__init__), (prepare, DataSplitter.__init__), (DataSplitter.__init__, BaseModelClass.train),
    (SemiSupervisedDataSplitter.__init__, DataSplitter.__init__),
], ids=lambda f: f.__qualname__)
def test_the_library_repeats_no_default_differently(a, b):
    """Where a wrapper names an argument of what it wraps, both give it the same default."""
    # train()'s seed=None means "the model's seed", not a different default.
    differ = [(n, x, y) for n, x, y in _shared(a, b) if x != y and not (n == "seed" and y is None)]
    assert not differ, f"{a.__qualname__} and {b.__qualname__} differ: {differ}"
