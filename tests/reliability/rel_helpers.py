"""Helpers of the reliability tests: run the `snakevi` command, fingerprint files, tiny datasets."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
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
