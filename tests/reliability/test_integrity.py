"""A model or checkpoint file changed by one byte after snakevi wrote it is refused by the `snakevi`
command: exit 1, a message naming the file and what to do, no traceback, nothing written."""

from __future__ import annotations

import json
import shutil

import pytest
from rel_helpers import MODEL, listing, sha256, snakevi, tiny_adata
from tamper import flip_a_tensor_byte

TRAIN = {"max_epochs": 2}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A registered, prepared and trained (2 epochs) tiny dataset, written in-process."""
    from snakevi.steps import prepare, register, train

    d = tmp_path_factory.mktemp("integrity")
    tiny_adata().write_h5ad(d / "x.h5ad")
    register(d / "x.h5ad", d / "registry.json", batch_key="batch")
    prepare(d / "x.h5ad", d / "registry.json", d / "prepared", batch_size=32)
    train(d / "prepared", d / "registry.json", d / "model", d / "history.csv", checkpoint_dir=d / "ckpt",
          model_params=MODEL, train_params=TRAIN, accelerator="cpu")
    return d


def _damaged_model(run, tmp_path):
    model = tmp_path / "model"
    shutil.copytree(run / "model", model)
    flip_a_tensor_byte(model / "model.pt")
    return model


def _assert_refused(proc, words, out):
    err = proc.stderr
    assert proc.returncode == 1, err[-3000:]
    assert "failed:" in err and "Traceback" not in err, err[-3000:]
    for word in words:
        assert word in err, f"{word!r} not in the message:\n{err[-3000:]}"
    assert listing(out) == [], "the failed step left files in its output folder"


MODEL_WORDS = ["does not match the SHA-256 recorded in", "Copy or save the model again", "verify=False"]


def test_export_refuses_a_damaged_model_file(run, tmp_path):
    model = _damaged_model(run, tmp_path)
    before = sha256(model)
    proc = snakevi("export", "--model", model, "--input", run / "x.h5ad", "--output", tmp_path / "out" / "e.h5ad",
                   "--threads", "1")
    _assert_refused(proc, [str(model / "model.pt"), *MODEL_WORDS], tmp_path / "out")
    assert sha256(model) == before


def test_map_query_refuses_a_damaged_reference(run, tmp_path):
    model = _damaged_model(run, tmp_path)
    query = tiny_adata(seed=5)
    query.obs["batch"] = query.obs["batch"].cat.rename_categories(lambda c: f"query_{c}")
    query.write_h5ad(tmp_path / "query.h5ad")
    out = tmp_path / "out"
    proc = snakevi("map-query", "--reference", model, "--input", tmp_path / "query.h5ad", "--model", out / "model",
                   "--history", out / "history.csv", "--output", out / "query.h5ad",
                   "--train-params", json.dumps({"max_epochs": 1, "batch_size": 16}), "--accelerator", "cpu",
                   "--threads", "1")
    _assert_refused(proc, [str(model / "model.pt"), *MODEL_WORDS], out)


def test_train_refuses_to_resume_from_a_damaged_checkpoint(run, tmp_path):
    ckpt = tmp_path / "ckpt"
    shutil.copytree(run / "ckpt", ckpt)  # same run fingerprint: train resumes from last.ckpt
    flip_a_tensor_byte(ckpt / "last.ckpt")
    before = sha256(ckpt)
    out = tmp_path / "out"
    proc = snakevi("train", "--prepared", run / "prepared", "--registry", run / "registry.json",
                   "--model", out / "model", "--history", out / "history.csv", "--checkpoint-dir", ckpt,
                   "--model-params", json.dumps(MODEL), "--train-params", json.dumps(TRAIN),
                   "--accelerator", "cpu", "--threads", "1")
    _assert_refused(proc, [f"checkpoint {ckpt / 'last.ckpt'} is damaged", "delete it to train from scratch"], out)
    assert sha256(ckpt) == before
