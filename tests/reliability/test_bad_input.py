"""Bad input, one case each, through the `snakevi` command: refused clearly, nothing written, input intact.

Every refusal must: exit with status 1; say on stderr which file, key or value is wrong and
what to do (a few words of the message are checked), without a traceback; leave nothing in
the output folder (no partial or temporary file); and leave the input files byte-identical.

Two inputs are accepted on purpose and tested as such: genes with zero counts (kept, their
number recorded in the registry) and a checkpoint folder written by a run with other data or
parameters (moved aside with a warning; training starts from scratch). Config errors of the
workflow (a wrong type, an unknown key) are tested in tests/workflow/test_demo.py
(``test_wrong_type_is_rejected_naming_the_key``, ``test_unknown_config_key_is_rejected_naming_it``);
the command-line equivalents (``--train-params``, ``--model-params``) are cases here.

The cases run two at a time (each is a process that imports anndata or torch) in one
module fixture; each test then checks one case's outcome.
"""

from __future__ import annotations

import json
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import h5py
import numpy as np
import pandas as pd
import pytest
from rel_helpers import MODEL, listing, sha256, snakevi, tiny_adata

TRAIN = {"max_epochs": 1}


@dataclass
class Setup:
    """What a case builds: the command line, the inputs that must stay unchanged, expected words."""

    args: list
    inputs: list[Path]
    words: list[str]


@dataclass
class Ctx:
    """Shared, valid artifacts the cases start from (written once, in-process)."""

    h5ad: Path
    registry: Path
    prepared: Path
    model: Path
    ckpt: Path
    foreign_ckpt: Path


# ---- building the cases ------------------------------------------------------------------
def _write(adata, d: Path) -> Path:
    path = d / "data.h5ad"
    adata.write_h5ad(path)
    return path


def _register(d: Path, adata, *extra, words=()) -> Setup:
    path = _write(adata, d)
    args = ["register", "--input", path, "--output", d / "out" / "registry.json", *extra]
    return Setup(args, [path], [str(path), *words])


def _dense(adata):
    adata.X = adata.X.toarray()
    return adata


def non_integer(d, ctx):
    a = tiny_adata()
    a.X = a.X.astype(np.float32)
    a.X.data[0] = 1.5
    cell, gene = a.obs_names[0], a.var_names[a.X.indices[0]]
    return _register(d, a, words=[f"cell {cell!r}, gene {gene!r} is 1.5", "not an integer", "raw counts",
                                  "layer='<name>'"])


def negative(d, ctx):
    a = _dense(tiny_adata())
    a.X[2, 3] = -1
    return _register(d, a, words=[f"cell {a.obs_names[2]!r}, gene {a.var_names[3]!r} is -1.0", "(negative)",
                                  "raw counts"])


def nan(d, ctx):
    a = _dense(tiny_adata())
    a.X[4, 5] = np.nan
    return _register(d, a, words=[f"cell {a.obs_names[4]!r}, gene {a.var_names[5]!r} is nan", "(NaN)"])


def inf(d, ctx):
    a = tiny_adata()
    a.X.data[10] = np.inf
    row = int(np.searchsorted(a.X.indptr, 10, side="right") - 1)
    return _register(d, a, words=[f"cell {a.obs_names[row]!r}", "is inf", "(infinite)"])


def zero_count_cells(d, ctx):
    a = _dense(tiny_adata())
    a.X[7] = 0
    return _register(d, a, words=["1 of 60 cells have zero total counts", repr(a.obs_names[7]), "Remove them",
                                  "filter_cells"])


def missing_batch_key(d, ctx):
    return _register(d, tiny_adata(), "--batch-key", "donr",
                     words=["batch_key='donr' is not a column of adata.obs", "Available columns", "'donor'"])


def missing_labels_key(d, ctx):
    return _register(d, tiny_adata(), "--labels-key", "cell_type",
                     words=["labels_key='cell_type' is not a column", "'label'"])


def missing_covariate_key(d, ctx):
    return _register(d, tiny_adata(), "--categorical-covariate-keys", "donor", "site",
                     words=["categorical_covariate_keys='site' is not a column", "add the column"])


def missing_values_in_categorical_key(d, ctx):
    a = tiny_adata()
    donor = a.obs["donor"].copy()
    donor.iloc[5] = np.nan
    a.obs["donor"] = donor
    return _register(d, a, "--batch-key", "donor",
                     words=["adata.obs['donor'] (batch_key) has 1 missing value", repr(a.obs_names[5]), "fillna"])


def missing_layer(d, ctx):
    return _register(d, tiny_adata(), "--layer", "counts",
                     words=["layer='counts' is not in adata.layers", "Available layers: none", "layer=None"])


def duplicated_var_names(d, ctx):
    a = tiny_adata()
    a.var_names = ["gene0", *a.var_names[1:-1], "gene0"]
    return _register(d, a, words=["var_names has 1 duplicated name(s): 'gene0'", "var_names_make_unique"])


def duplicated_obs_names(d, ctx):
    a = tiny_adata()
    a.obs_names = [*a.obs_names[:-1], "cell3"]
    return _register(d, a, words=["obs_names has 1 duplicated name(s): 'cell3'", "obs_names_make_unique"])


def empty_anndata(d, ctx):
    return _register(d, tiny_adata()[:0].copy(), words=["empty (0 cells x 30 genes)", "filtering"])


def truncated_h5ad(d, ctx):
    path = _write(tiny_adata(), d)
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) * 6 // 10])
    args = ["register", "--input", path, "--output", d / "out" / "registry.json"]
    return Setup(args, [path], [str(path), "truncated or corrupted", "copy or write it again"])


def not_h5ad(d, ctx):
    path = d / "data.h5ad"
    tiny_adata().to_df().to_csv(path)
    args = ["register", "--input", path, "--output", d / "out" / "registry.json"]
    return Setup(args, [path], [str(path), "is not an .h5ad file", "write_h5ad"])


def hdf5_not_anndata(d, ctx):
    path = d / "filtered_feature_bc_matrix.h5"
    with h5py.File(path, "w") as fh:
        fh["matrix/data"] = np.arange(5)
    args = ["register", "--input", path, "--output", d / "out" / "registry.json"]
    return Setup(args, [path], [str(path), "HDF5 file but not AnnData", "['matrix']", "read_10x_h5"])


def missing_file(d, ctx):
    path = d / "dtaa.h5ad"
    args = ["register", "--input", path, "--output", d / "out" / "registry.json"]
    return Setup(args, [], [str(path), "does not exist", "check the path"])


def n_top_genes_above_n_vars(d, ctx):
    return _register(d, tiny_adata(), "--batch-key", "batch", "--n-top-genes", "500",
                     words=["setup.n_top_genes=500", "has 30 genes", "between 1 and 30"])


def too_few_cells_to_train(d, ctx):
    # A batch_size above the training set is accepted (one short minibatch, as scvi-tools); a
    # one-cell AnnData is not: register accepts it, the split refuses it, naming the fix.
    from snakevi.steps import register

    path = _write(tiny_adata(n_cells=1), d)
    register(path, d / "registry.json")
    args = ["prepare", "--input", path, "--registry", d / "registry.json", "--output", d / "out" / "prepared"]
    return Setup(args, [path, d / "registry.json"],
                 [str(path), "Too few cells to train: 1 cell(s) leave 0 for training", "at least 3 cells"])


def dataset_changed_since_registration(d, ctx):
    path = _write(tiny_adata(n_cells=50), d)
    args = ["prepare", "--input", path, "--registry", ctx.registry, "--output", d / "out" / "prepared"]
    return Setup(args, [path, ctx.registry], [str(path), "has 50 cells", "made for 60", "register step again"])


def counts_changed_since_registration(d, ctx):
    # Same cells and genes as registered, but a bad value: found while the arrays are being
    # written, so this checks that the half-written prepared folder is removed.
    a = _dense(tiny_adata())
    a.X[50, 7] = -3
    path = _write(a, d)
    args = ["prepare", "--input", path, "--registry", ctx.registry, "--output", d / "out" / "prepared",
            "--batch-size", "32"]
    return Setup(args, [path, ctx.registry], [str(path), f"cell {a.obs_names[50]!r}, gene {a.var_names[7]!r} is -3.0",
                                              "not a raw count", "Register the file again"])


def model_against_other_genes(d, ctx):
    a = tiny_adata()
    a.var_names = [f"other{i}" if i < 5 else g for i, g in enumerate(a.var_names)]
    path = _write(a, d)
    args = ["export", "--model", ctx.model, "--input", path, "--output", d / "out" / "embedding.h5ad"]
    return Setup(args, [path, ctx.model], [str(path), "lacks 5 of the model's genes", "'gene0'",
                                          "the dataset the model was trained on"])


def model_against_unseen_categories(d, ctx):
    a = tiny_adata()
    a.obs["batch"] = a.obs["batch"].cat.rename_categories({"batch1": "batch_new"})
    path = _write(a, d)
    args = ["export", "--model", ctx.model, "--input", path, "--output", d / "out" / "embedding.h5ad"]
    return Setup(args, [path, ctx.model], [str(path), "does not fit the model", "adata.obs['batch']",
                                          "'batch_new'", "Known categories: 'batch0', 'batch1'"])


def _train_args(d, ctx, *, ckpt=None, model=MODEL, train=TRAIN, registry=None):
    args = ["train", "--prepared", ctx.prepared, "--registry", registry or ctx.registry,
            "--model", d / "out" / "model", "--history", d / "out" / "history.csv",
            "--model-params", json.dumps(model), "--train-params", json.dumps(train),
            "--accelerator", "cpu", "--threads", "1"]
    return args + (["--checkpoint-dir", ckpt] if ckpt else [])


def checkpoint_from_another_run(d, ctx):
    # The folder's fingerprint says "this run", but last.ckpt was copied in from a run with
    # another n_latent: resuming must refuse it, say which file, and leave it alone.
    ckpt = d / "ckpt"
    shutil.copytree(ctx.ckpt, ckpt)
    shutil.copy(ctx.foreign_ckpt, ckpt / "last.ckpt")
    return Setup(_train_args(d, ctx, ckpt=ckpt), [ckpt / "last.ckpt", ctx.prepared],
                 [str(ckpt / "last.ckpt"), "written for another model/run", "shape mismatches",
                  "delete the checkpoint"])


def prepared_for_another_registry(d, ctx):
    other = d / "other_registry.json"
    reg = json.loads(ctx.registry.read_text())
    reg["fields"]["batch"]["categorical_mapping"] = ["batch1", "batch0"]
    other.write_text(json.dumps(reg))
    return Setup(_train_args(d, ctx, registry=other), [other, ctx.prepared],
                 [str(ctx.prepared), "prepared with another registry", "prepare step again"])


def unknown_training_parameter(d, ctx):
    return Setup(_train_args(d, ctx, train={"max_epoch": 3}), [ctx.prepared],
                 ["Unknown training parameter(s) ['max_epoch']", "max_epochs", "Check the spelling"])


def wrong_type_training_parameter(d, ctx):
    return Setup(_train_args(d, ctx, train={"max_epochs": "ten"}), [ctx.prepared],
                 ["max_epochs='ten'", "expected an int >= 1"])


def unknown_model_parameter(d, ctx):
    return Setup(_train_args(d, ctx, model={"n_latnt": 3}), [ctx.prepared],
                 ["Invalid model parameter", "n_latnt", "'model' section"])


CASES: dict[str, Callable[[Path, Ctx], Setup]] = {f.__name__: f for f in (
    non_integer, negative, nan, inf, zero_count_cells,
    missing_batch_key, missing_labels_key, missing_covariate_key, missing_values_in_categorical_key,
    missing_layer, duplicated_var_names, duplicated_obs_names, empty_anndata,
    truncated_h5ad, not_h5ad, hdf5_not_anndata, missing_file,
    n_top_genes_above_n_vars, too_few_cells_to_train, dataset_changed_since_registration,
    counts_changed_since_registration,
    model_against_other_genes, model_against_unseen_categories,
    checkpoint_from_another_run, prepared_for_another_registry,
    unknown_training_parameter, wrong_type_training_parameter, unknown_model_parameter,
)}


# ---- fixtures ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ctx(tmp_path_factory) -> Ctx:
    """A registered, prepared and trained (1 epoch) tiny dataset, plus a checkpoint of another model."""
    from snakevi.steps import prepare, register, train

    d = tmp_path_factory.mktemp("valid")
    h5ad = _write(tiny_adata(), d)
    register(h5ad, d / "registry.json", batch_key="batch")
    prepare(h5ad, d / "registry.json", d / "prepared", batch_size=32)
    train(d / "prepared", d / "registry.json", d / "model", d / "history.csv", checkpoint_dir=d / "ckpt",
          model_params=MODEL, train_params=TRAIN, accelerator="cpu")
    train(d / "prepared", d / "registry.json", d / "model3", d / "history3.csv", checkpoint_dir=d / "ckpt3",
          model_params={**MODEL, "n_latent": 3}, train_params=TRAIN, accelerator="cpu")
    return Ctx(h5ad, d / "registry.json", d / "prepared", d / "model", d / "ckpt", d / "ckpt3" / "last.ckpt")


@pytest.fixture(scope="module")
def outcomes(ctx, tmp_path_factory) -> dict:
    """Build every case, fingerprint its inputs, run its command (two at a time), fingerprint again."""
    built = {}
    for name, build in CASES.items():
        d = tmp_path_factory.mktemp(name)
        setup = build(d, ctx)
        built[name] = (d, setup, {p: sha256(p) for p in setup.inputs})

    def run(name):
        d, setup, before = built[name]
        proc = snakevi(*setup.args)
        return name, (d, setup, before, proc, {p: sha256(p) for p in setup.inputs})

    with ThreadPoolExecutor(max_workers=2) as pool:
        return dict(pool.map(run, CASES))


# ---- the tests ---------------------------------------------------------------------------
@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_refused_clearly_leaving_nothing(case, outcomes):
    d, setup, before, proc, after = outcomes[case]
    err = proc.stderr
    assert proc.returncode == 1, f"exit {proc.returncode}\n{err[-3000:]}"
    assert "failed:" in err and "Traceback" not in err, err[-3000:]
    for word in setup.words:
        assert word in err, f"{word!r} not in the message:\n{err[-3000:]}"
    assert listing(d / "out") == [], "the failed step left files in its output folder"
    assert after == before, "the step changed one of its inputs"


def test_the_catalogue_covers_every_case_of_the_issue():
    # The issue's list, by case name (the config cases are in tests/workflow/test_demo.py; genes
    # with zero counts and checkpoints of another run's parameters are accepted, tested below).
    required = {
        "non_integer", "negative", "nan", "inf", "zero_count_cells", "missing_batch_key", "missing_labels_key",
        "missing_covariate_key", "missing_values_in_categorical_key", "missing_layer", "duplicated_var_names",
        "duplicated_obs_names", "empty_anndata", "truncated_h5ad", "not_h5ad", "n_top_genes_above_n_vars",
        "too_few_cells_to_train", "model_against_other_genes", "model_against_unseen_categories",
        "checkpoint_from_another_run", "unknown_training_parameter", "wrong_type_training_parameter",
    }
    assert required <= set(CASES), sorted(required - set(CASES))
    assert len(CASES) == 28


def test_genes_with_zero_counts_are_kept_and_counted(tmp_path):
    a = _dense(tiny_adata())
    a.X[:, [2, 9]] = 0
    path = _write(a, tmp_path)
    digest = sha256(path)
    proc = snakevi("register", "--input", path, "--output", tmp_path / "out" / "registry.json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    registry = json.loads((tmp_path / "out" / "registry.json").read_text())
    assert registry["summary"]["n_vars"] == 30
    assert registry["validation"]["n_genes_zero_counts"] == 2
    assert "2 of 30 genes have zero counts in every cell" in proc.stderr and "filter_genes" in proc.stderr
    assert listing(tmp_path / "out") == ["registry.json"]
    assert sha256(path) == digest


def test_checkpoints_of_a_run_with_other_parameters_are_moved_aside(ctx, tmp_path):
    ckpt = tmp_path / "ckpt"
    shutil.copytree(ctx.ckpt, ckpt)
    old = sha256(ckpt)
    proc = snakevi(*_train_args(tmp_path, ctx, ckpt=ckpt, train={"max_epochs": 2}))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"{ckpt} holds checkpoints of a run with other data or parameters" in proc.stderr
    assert "resuming from" not in proc.stderr
    stale = tmp_path / "ckpt.stale"
    assert sha256(stale) == old  # kept intact, under another name
    assert len(pd.read_csv(tmp_path / "out" / "history.csv")) == 2
