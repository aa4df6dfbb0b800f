"""Safety: paths with a space and a quote work through every step of the `snakevi` command, and a
crafted pickle in a checkpoint or model file is refused without running its code."""

from __future__ import annotations

import json
import shutil

import anndata
import numpy as np
import pytest
import torch
from rel_helpers import MODEL, listing, sha256, snakevi, tiny_adata

TRAIN = {"max_epochs": 1}


@pytest.fixture(scope="module")
def quoted_run(tmp_path_factory):
    """register -> prepare -> train -> export, every path under ``my data's dir/``."""
    d = tmp_path_factory.mktemp("safety") / "my data's dir"
    d.mkdir()
    h5ad = d / "x.h5ad"
    tiny_adata().write_h5ad(h5ad)
    steps = [
        ["register", "--input", h5ad, "--output", d / "reg istry.json", "--batch-key", "batch",
         "--log", d / "logs" / "it's register.log"],
        ["prepare", "--input", h5ad, "--registry", d / "reg istry.json", "--output", d / "pre pared",
         "--batch-size", "32"],
        ["train", "--prepared", d / "pre pared", "--registry", d / "reg istry.json", "--model", d / "mo del",
         "--history", d / "hist'ory.csv", "--model-params", json.dumps(MODEL), "--train-params", json.dumps(TRAIN),
         "--accelerator", "cpu", "--threads", "1"],
        ["export", "--model", d / "mo del", "--input", h5ad, "--output", d / "emb'edding.h5ad", "--threads", "1"],
    ]
    for args in steps:
        proc = snakevi(*args)
        assert proc.returncode == 0, f"{args[0]}: {proc.stderr[-3000:]}"
    return d


def test_paths_with_a_space_and_a_quote_work_through_every_step(quoted_run):
    d = quoted_run
    emb = anndata.read_h5ad(d / "emb'edding.h5ad")
    assert emb.obsm["X_scVI"].shape == (60, MODEL["n_latent"]) and np.isfinite(emb.obsm["X_scVI"]).all()
    assert list(emb.obs_names) == list(anndata.read_h5ad(d / "x.h5ad").obs_names)
    assert "finished" in (d / "logs" / "it's register.log").read_text()
    assert (d / "checkpoints" / "last.ckpt").is_file()


class Payload:
    """Unpickling this calls ``open(marker, "w")``: proof that code from the file ran."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_pickle_payload_in_a_checkpoint_is_refused_without_running(quoted_run, tmp_path):
    ckpt = tmp_path / "checkpoints"
    shutil.copytree(quoted_run / "checkpoints", ckpt)  # same run fingerprint: train will resume from it
    marker = tmp_path / "pwned"
    torch.save({"format_version": 1, "evil": Payload(marker)}, ckpt / "last.ckpt")
    digest = sha256(ckpt / "last.ckpt")
    d = quoted_run
    proc = snakevi("train", "--prepared", d / "pre pared", "--registry", d / "reg istry.json",
                   "--model", tmp_path / "out" / "model", "--history", tmp_path / "out" / "history.csv",
                   "--checkpoint-dir", ckpt, "--model-params", json.dumps(MODEL), "--train-params", json.dumps(TRAIN),
                   "--accelerator", "cpu", "--threads", "1")
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert not marker.exists(), "loading the checkpoint ran code from it"
    assert f"checkpoint {ckpt / 'last.ckpt'} could not be read as a snakevi training checkpoint" in proc.stderr
    assert "Unsupported global" in proc.stderr and "delete it to train from scratch" in proc.stderr
    assert "Traceback" not in proc.stderr and "weights_only` set to `False`" not in proc.stderr
    assert sha256(ckpt / "last.ckpt") == digest
    assert listing(tmp_path / "out") == []


def test_pickle_payload_in_a_model_file_is_refused_by_export(quoted_run, tmp_path):
    model = tmp_path / "model"
    shutil.copytree(quoted_run / "mo del", model)
    marker = tmp_path / "pwned"
    torch.save({"evil": Payload(marker)}, model / "model.pt")
    proc = snakevi("export", "--model", model, "--input", quoted_run / "x.h5ad",
                   "--output", tmp_path / "out" / "embedding.h5ad")
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert not marker.exists(), "loading the model ran code from it"
    assert f"{model / 'model.pt'} could not be read as a plain tensor state_dict" in proc.stderr
    assert "weights_only=True" in proc.stderr and "Unsupported global" in proc.stderr
    # The refusal must not pass on torch's advice to load the file with weights_only=False.
    assert "weights_only` set to `False`" not in proc.stderr and "Traceback" not in proc.stderr
    assert listing(tmp_path / "out") == []
