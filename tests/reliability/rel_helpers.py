"""Helpers of the reliability tests: run the `snakevi` command, fingerprint files, tiny datasets."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

SNAKEVI = Path(sys.executable).with_name("snakevi")
#: One CPU thread per step process: the data are tiny, and the machine has two cores.
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
       "PYTHONWARNINGS": "ignore::DeprecationWarning"}
#: The model every test trains: small enough for a fraction of a second per epoch.
MODEL = {"n_hidden": 16, "n_latent": 4}


def cli_args(*args) -> list[str]:
    return [str(SNAKEVI), *(str(a) for a in args)]


def snakevi(*args, timeout: int = 300) -> subprocess.CompletedProcess:
    """Run ``snakevi ARGS`` and return the finished process (text stdout/stderr)."""
    return subprocess.run(cli_args(*args), capture_output=True, text=True, timeout=timeout, env=ENV)


def popen_snakevi(*args, stderr_path: Path) -> subprocess.Popen:
    """Start ``snakevi ARGS`` in the background in its own process group, stderr to a file."""
    with open(stderr_path, "w") as err:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(cli_args(*args), stdout=subprocess.DEVNULL, stderr=err, env=ENV,
                                start_new_session=True)


def sha256(path: Path) -> str:
    """sha256 of a file, or of every file under a folder (names and contents)."""
    path = Path(path)
    h = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for f in files:
        h.update(str(f.relative_to(path) if f != path else f.name).encode())
        h.update(f.read_bytes())
    return h.hexdigest()


def listing(folder: Path) -> list[str]:
    """Every path under ``folder`` (hidden temporary files included); [] when it does not exist."""
    folder = Path(folder)
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() else []


def tiny_adata(n_cells: int = 60, n_genes: int = 30, seed: int = 0):
    """A small simulated AnnData: CSR counts, obs batch/label (2 each) and a categorical 'donor'."""
    from snakevi.data import simulate

    adata = simulate(n_cells=n_cells, n_genes=n_genes, n_batches=2, n_groups=2, seed=seed)
    adata.obs["donor"] = pd.Categorical(np.where(np.arange(n_cells) % 3 == 0, "d0", "d1"))
    return adata


def wait_for_checkpoint(proc: subprocess.Popen, ckpt: Path, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not ckpt.is_file():
        assert proc.poll() is None, f"train exited ({proc.returncode}) before writing {ckpt}"
        assert time.monotonic() < deadline, f"no checkpoint after {timeout} s"
        time.sleep(0.01)


def assert_same_result(out: Path, ref: Path, epochs: int) -> None:
    """Same weights (every tensor equal) and the same history file, byte for byte."""
    import torch

    got = torch.load(out / "model" / "model.pt", weights_only=True)
    want = torch.load(ref / "model" / "model.pt", weights_only=True)
    assert got.keys() == want.keys()
    different = [k for k in want if not torch.equal(got[k], want[k])]
    assert different == [], f"tensors differ from the uninterrupted run: {different[:5]}"
    assert (out / "history.csv").read_text() == (ref / "history.csv").read_text()
    assert len(pd.read_csv(out / "history.csv")) == epochs


def checkpoint_epoch(out: Path) -> int:
    import torch

    return int(torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)["epoch"])


def prepare_resume_data(folder: Path) -> tuple[Path, Path]:
    """``(registry, prepared)`` of 1000 cells x 40 genes, batch size 32 (about 30 steps per epoch)."""
    from snakevi.steps import prepare, register

    tiny_adata(n_cells=1000, n_genes=40).write_h5ad(folder / "data.h5ad")
    register(folder / "data.h5ad", folder / "registry.json", batch_key="batch")
    prepare(folder / "data.h5ad", folder / "registry.json", folder / "prepared", batch_size=32)
    return folder / "registry.json", folder / "prepared"


def resume_train_args(prepared, out: Path, max_epochs: int, checkpoint_every_seconds: str, *extra) -> list:
    """``snakevi train`` arguments of the kill-and-resume tests: outputs and checkpoints under ``out``, seed 3."""
    registry, prep = prepared
    return ["train", "--prepared", prep, "--registry", registry, "--model", out / "model",
            "--history", out / "history.csv", "--checkpoint-dir", out / "checkpoints",
            "--checkpoint-every-seconds", checkpoint_every_seconds,
            "--model-params", json.dumps(MODEL), "--train-params", json.dumps({"max_epochs": max_epochs}),
            "--seed", "3", "--accelerator", "cpu", *extra]


@contextlib.contextmanager
def killed_at_exit(proc: subprocess.Popen):
    """Yield ``proc``; SIGKILL its process group when the block ends with it still running (a failed test)."""
    try:
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
