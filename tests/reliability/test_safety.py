"""Safety: paths with a space and a quote work through every step of the `snakevi` command, and a
crafted pickle in a checkpoint, model or prepared file is refused without running its code, with a
message that says what was refused and why and never advises loading the file unsafely."""

from __future__ import annotations

import json
import os
import pickle
import shlex
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


class ShellPayload:
    """Unpickling this runs ``touch SENTINEL`` through ``os.system`` (the global ``posix.system``)."""

    def __init__(self, sentinel):
        self.command = f"touch {shlex.quote(str(sentinel))}"

    def __reduce__(self):
        return (os.system, (self.command,))


def write_payload(kind, path, sentinel, wrap=lambda payload: payload):
    """Write ``wrap(ShellPayload)`` to ``path`` as ``kind``: a torch.save archive, a raw pickle or an object .npy."""
    obj = wrap(ShellPayload(sentinel))
    if kind == "torch.save":
        torch.save(obj, path)
    elif kind == "pickle.dump":
        with open(path, "wb") as fh:
            pickle.dump(obj, fh)
    else:
        with open(path, "wb") as fh:
            np.save(fh, np.array([obj, 1], dtype=object), allow_pickle=True)


#: Words that would advise loading a refused file some unsafe way (torch's and numpy's advice).
UNSAFE_ADVICE = ("weights_only=false", "weights_only` set to `false`", "safe_globals", "allow_pickle",
                 "unsafely", "if you trust", "trusted source", "pickle.load")
#: What the refusal must name: the refused global, or the unpickler's own reason.
TORCH_REFUSAL = {"torch.save": "posix.system", "pickle.dump": "Unsupported pickle opcode 149"}


def assert_refused_safely(proc, sentinel, words):
    err = proc.stderr
    assert proc.returncode == 1, err[-3000:]
    assert not sentinel.exists(), "loading the file ran code from it"
    for word in words:
        assert word in err, f"{word!r} not in the message:\n{err[-3000:]}"
    for advice in UNSAFE_ADVICE:
        assert advice not in err.lower(), f"the message advises unsafe loading ({advice!r}):\n{err[-3000:]}"
    assert "Traceback" not in err, err[-3000:]


@pytest.mark.parametrize("kind", list(TORCH_REFUSAL))
def test_shell_payload_in_a_model_file_is_refused_naming_why(quoted_run, tmp_path, kind):
    model = tmp_path / "model"
    shutil.copytree(quoted_run / "mo del", model)
    sentinel = tmp_path / "SENTINEL"
    write_payload(kind, model / "model.pt", sentinel, wrap=lambda p: {"evil": p})
    proc = snakevi("export", "--model", model, "--input", quoted_run / "x.h5ad",
                   "--output", tmp_path / "out" / "embedding.h5ad")
    assert_refused_safely(proc, sentinel, [f"{model / 'model.pt'} could not be read as a plain tensor state_dict",
                                           TORCH_REFUSAL[kind]])
    assert listing(tmp_path / "out") == []


@pytest.mark.parametrize("kind", list(TORCH_REFUSAL))
def test_shell_payload_in_a_checkpoint_is_refused_naming_why(quoted_run, tmp_path, kind):
    ckpt = tmp_path / "checkpoints"
    shutil.copytree(quoted_run / "checkpoints", ckpt)  # same run fingerprint: train will resume from it
    sentinel = tmp_path / "SENTINEL"
    write_payload(kind, ckpt / "last.ckpt", sentinel, wrap=lambda p: {"format_version": 1, "evil": p})
    d = quoted_run
    proc = snakevi("train", "--prepared", d / "pre pared", "--registry", d / "reg istry.json",
                   "--model", tmp_path / "out" / "model", "--history", tmp_path / "out" / "history.csv",
                   "--checkpoint-dir", ckpt, "--model-params", json.dumps(MODEL), "--train-params", json.dumps(TRAIN),
                   "--accelerator", "cpu", "--threads", "1")
    assert_refused_safely(proc, sentinel, [f"checkpoint {ckpt / 'last.ckpt'} could not be read",
                                           TORCH_REFUSAL[kind], "delete it to train from scratch"])
    assert listing(tmp_path / "out") == []


#: A prepared array replaced by each kind of file, and what the refusal must say about it.
NPY_REFUSAL = {"torch.save": "a zip archive", "pickle.dump": "pickled Python objects", "np.save": "Python objects"}


@pytest.mark.parametrize("name", ["X_data.npy", "split_train.npy"])
@pytest.mark.parametrize("kind", list(NPY_REFUSAL))
def test_payload_in_a_prepared_array_is_refused_naming_why(quoted_run, tmp_path, kind, name):
    prepared = tmp_path / "prepared"
    shutil.copytree(quoted_run / "pre pared", prepared)
    sentinel = tmp_path / "SENTINEL"
    write_payload(kind, prepared / name, sentinel)
    d = quoted_run
    proc = snakevi("train", "--prepared", prepared, "--registry", d / "reg istry.json",
                   "--model", tmp_path / "out" / "model", "--history", tmp_path / "out" / "history.csv",
                   "--checkpoint-dir", tmp_path / "out" / "ckpt", "--model-params", json.dumps(MODEL),
                   "--train-params", json.dumps(TRAIN), "--accelerator", "cpu", "--threads", "1")
    assert_refused_safely(proc, sentinel, [f"{prepared / name} was refused", NPY_REFUSAL[kind],
                                           "prepare step again"])
    assert listing(tmp_path / "out") == []


@pytest.mark.filterwarnings("ignore:'torch.load' received a zip file")
def test_every_torch_refusal_keeps_its_reason_and_drops_the_unsafe_advice(tmp_path):
    from snakevi._safe_load import load_error_reason

    torch.save({"evil": Payload(tmp_path / "pwned")}, tmp_path / "open.pt")
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), tmp_path / "script.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    expected = {"open.pt": "Unsupported global", "script.pt": "TorchScript archives",
                "junk.pt": "not a torch.save archive"}
    for name, words in expected.items():
        with pytest.raises(Exception) as info:
            torch.load(tmp_path / name, weights_only=True)
        reason = load_error_reason(info.value)
        assert words in reason, reason
        assert not any(advice in reason.lower() for advice in UNSAFE_ADVICE), reason
    assert not (tmp_path / "pwned").exists()
