"""The whole workflow, run as `snakemake`: determinism, a dataset path with a space and a quote,
and resuming after the snakemake process group is killed.

Three working directories get the same config and the same dataset file, at
``my data's dir/x.h5ad``. Two run the workflow uninterrupted (side by side) and must give
byte-identical weights and identical embeddings on CPU; the third is SIGKILLed (snakemake and
its job together) once training has written a checkpoint, then rerun with
``--rerun-incomplete``: it must resume from the checkpoint and end identical to the others.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import anndata
import numpy as np
import pytest
from rel_helpers import MODEL, tiny_adata

_spec = importlib.util.spec_from_file_location("wf_helpers", Path(__file__).parents[1] / "workflow" / "wf_helpers.py")
wf = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(wf)

DATASET = "my data's dir/x.h5ad"
CONFIG = {
    "runs": {
        "demo": {
            "dataset": DATASET,
            "setup": {"batch_key": "batch", "labels_key": "label"},
            "split": {"batch_size": 32},
            "model": MODEL,
            "train": {"max_epochs": 5, "checkpoint_every_seconds": 0},
            "export": {"normalized_layer": "scvi_normalized"},
            "resources": {"threads": 1},
        }
    }
}
RUN = Path("results") / "demo"


def start_snakemake(workdir: Path, *args: str) -> subprocess.Popen:
    """``snakemake`` in the background, in its own process group, output to workdir/snakemake.txt."""
    exe = Path(sys.executable).with_name("snakemake")
    env = {**os.environ, "PATH": f"{exe.parent}{os.pathsep}{os.environ.get('PATH', '')}",
           "PYTHONWARNINGS": "ignore::DeprecationWarning", "OMP_NUM_THREADS": "1"}
    with open(workdir / "snakemake.txt", "a") as out:  # the child keeps its own copy of the descriptor
        return subprocess.Popen([str(exe), "-s", str(wf.SNAKEFILE), "-d", str(workdir), *args], cwd=workdir,
                                stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)


def new_workdir(root: Path, name: str, data: Path) -> Path:
    workdir = root / name
    (workdir / DATASET).parent.mkdir(parents=True)
    shutil.copy(data, workdir / DATASET)
    wf.write_config(workdir, CONFIG)
    return workdir


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("wf_runs")
    data = root / "x.h5ad"
    tiny_adata(n_cells=1000, n_genes=40).write_h5ad(data)
    return root, data


@pytest.fixture(scope="module")
def uninterrupted(root):
    """Two whole-workflow runs, started side by side in the background; call to wait for them."""
    base, data = root
    dirs = [new_workdir(base, name, data) for name in ("first", "second")]
    procs = [start_snakemake(d, "--cores", "1") for d in dirs]

    def wait() -> list[Path]:
        for d, proc in zip(dirs, procs):
            assert proc.wait(timeout=900) == 0, (d / "snakemake.txt").read_text()[-5000:]
        return dirs

    yield wait
    for proc in procs:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)


def test_two_runs_give_byte_identical_weights_and_identical_embeddings(uninterrupted):
    first, second = (d / RUN for d in uninterrupted())
    assert (first / "model" / "model.pt").read_bytes() == (second / "model" / "model.pt").read_bytes()
    assert (first / "history.csv").read_text() == (second / "history.csv").read_text()
    a, b = anndata.read_h5ad(first / "embedding.h5ad"), anndata.read_h5ad(second / "embedding.h5ad")
    assert np.array_equal(a.obsm["X_scVI"], b.obsm["X_scVI"])
    assert np.array_equal(a.layers["scvi_normalized"], b.layers["scvi_normalized"])


def test_a_dataset_path_with_a_space_and_a_quote_works(uninterrupted):
    workdir = uninterrupted()[0]
    emb = anndata.read_h5ad(workdir / RUN / "embedding.h5ad")
    source = anndata.read_h5ad(workdir / DATASET)
    assert list(emb.obs_names) == list(source.obs_names)
    assert emb.obsm["X_scVI"].shape == (1000, MODEL["n_latent"]) and np.isfinite(emb.obsm["X_scVI"]).all()
    assert (workdir / "results" / "summary.tsv").is_file()


def test_killed_workflow_resumes_from_the_checkpoint_with_rerun_incomplete(root, uninterrupted):
    base, data = root
    workdir = new_workdir(base, "killed", data)
    # Up to the embedding (the report and summary add nothing to what is compared here).
    target = str(RUN / "embedding.h5ad")
    proc = start_snakemake(workdir, "--cores", "1", target)
    ckpt = workdir / RUN / "checkpoints" / "last.ckpt"
    deadline = time.monotonic() + 600
    while not ckpt.is_file():
        assert proc.poll() is None, (workdir / "snakemake.txt").read_text()[-5000:]
        assert time.monotonic() < deadline, "no checkpoint after 600 s"
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)  # snakemake and the train job with it
    proc.wait(timeout=60)
    assert not (workdir / RUN / "history.csv").exists()
    # A killed snakemake leaves its lock behind: --unlock, then --rerun-incomplete.
    wf.snakemake(workdir, "--unlock")
    wf.snakemake(workdir, "--cores", "1", "--rerun-incomplete", target)
    log = (workdir / RUN / "logs" / "train.log").read_text()
    assert f"resuming from {RUN / 'checkpoints' / 'last.ckpt'}" in log
    reference = uninterrupted()[0] / RUN
    assert (workdir / RUN / "model" / "model.pt").read_bytes() == (reference / "model" / "model.pt").read_bytes()
    assert (workdir / RUN / "history.csv").read_text() == (reference / "history.csv").read_text()
    got, want = anndata.read_h5ad(workdir / RUN / "embedding.h5ad"), anndata.read_h5ad(reference / "embedding.h5ad")
    assert np.array_equal(got.obsm["X_scVI"], want.obsm["X_scVI"])
