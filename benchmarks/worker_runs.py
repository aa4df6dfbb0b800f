"""Run ``latent_worker.py`` for snakevi or scvi-tools (each in its own environment) and load the result."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
OUT = HERE / "out" / "integration"
DATA = ROOT.parent / "shared" / "data"
#: The interpreter of each system: this environment for snakevi, .venv-scvi for scvi-tools.
PYTHON = {"snakevi": sys.executable, "scvi-tools": str(ROOT / ".venv-scvi" / "bin" / "python")}


def ensure_scvi_env() -> None:
    """Make .venv-scvi with scvi-tools 1.4.2 if it is missing (idempotent)."""
    subprocess.run(["bash", str(HERE / "setup_scvi_env.sh")], check=True)


def run_worker(system: str, out: Path, args: list[str], *, threads: int, reuse: bool) -> dict:
    """One ``latent_worker.py`` run (skipped when ``reuse`` and ``out`` exists); its arrays as a dict."""
    if not (reuse and out.is_file()):
        out.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONWARNINGS": "ignore",
               "PYTHONPATH": str(ROOT / "src")}
        cmd = [PYTHON[system], str(HERE / "latent_worker.py"), "--system", system, "--threads", str(threads),
               "--out", str(out), *args]
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-4000:]}")
    with np.load(out, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def mean_sd(values) -> str:
    """``mean ± sd`` (sample sd) of the finite values, 3 decimals; the value alone for one."""
    v = np.asarray([x for x in values if x is not None and np.isfinite(x)], dtype=float)
    if v.size == 0:
        return "n/a"
    if v.size == 1:
        return f"{v[0]:.3f} (1 seed)"
    return f"{v.mean():.3f} ± {v.std(ddof=1):.3f}"


def machine() -> str:
    """Machine and versions line for the tables."""
    import platform

    import torch

    return (f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
            f"torch {torch.__version__}")
