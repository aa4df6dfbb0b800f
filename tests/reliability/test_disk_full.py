"""Disk full: every step, through the `snakevi` command, on a real filesystem with no space left.

Each case writes its outputs onto a small tmpfs filled up to the last byte (or to 48 kB for
the case that must get as far as training) that already holds the output of an earlier run.
Every step must: exit with status 1 (not a crash: HDF5 used to end the export with SIGSEGV);
say "No space left on <folder>" and about how much it needed (in kB or MB), without a
traceback; leave no temporary file behind; and leave the earlier output byte-identical. A
stale temporary file of a killed run is removed by the next run of the step that writes the
output.

Mounting needs root (or CAP_SYS_ADMIN); where the machine does not allow it, the cases that
need a full filesystem are skipped with that reason (probed once).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest
from rel_helpers import ENV, MODEL, listing, sha256, snakevi, tiny_adata

TRAIN = {"max_epochs": 1}
#: Size of each case's filesystem: room for the earlier outputs of the tiny data.
FS_SIZE = "2m"


# ---- a small full filesystem -------------------------------------------------------------
def _mount(point: Path, size: str = FS_SIZE) -> subprocess.CompletedProcess:
    point.mkdir(parents=True, exist_ok=True)
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(point)],
                          capture_output=True, text=True)


def _umount(point: Path) -> None:
    # Lazy: a step killed by the test may still hold a file open there.
    subprocess.run(["umount", "-l", str(point)], capture_output=True)


@pytest.fixture(scope="module")
def can_mount(tmp_path_factory) -> None:
    """Skip (with the reason) where this machine does not let the tests mount a tmpfs."""
    probe = tmp_path_factory.mktemp("probe") / "fs"
    proc = _mount(probe, "64k")
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root or CAP_SYS_ADMIN): {proc.stderr.strip()}")
    _umount(probe)


def fill(folder: Path, leave: int = 0) -> Path:
    """Fill ``folder``'s filesystem with one file until ``leave`` bytes (or none) are free."""
    filler = folder / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        room = shutil.disk_usage(folder).free - leave
        while room > 0:
            try:
                room -= os.write(fd, b"\0" * min(room, 1 << 16))
            except OSError:
                break
        while leave == 0:  # the last bytes of the last page
            try:
                os.write(fd, b"\0")
            except OSError:
                break
    finally:
        os.close(fd)
    return filler


@contextlib.contextmanager
def mounted(point: Path, size: str = FS_SIZE):
    proc = _mount(point, size)
    assert proc.returncode == 0, proc.stderr
    try:
        yield point
    finally:
        _umount(point)


# ---- the valid artifacts the cases start from ----------------------------------------------
@dataclass
class Ctx:
    d: Path
    h5ad: Path
    query: Path
    registry: Path
    prepared: Path
    model: Path
    history: Path
    latent: Path
    embedding: Path
    report: Path
    integration: Path
    summary: Path


@pytest.fixture(scope="module")
def ctx(tmp_path_factory) -> Ctx:
    """Every step's output for the tiny dataset, written in-process on a normal disk."""
    from snakevi.steps import export, integration, prepare, register, report, summarize, train

    d = tmp_path_factory.mktemp("valid")
    h5ad, query = d / "data.h5ad", d / "query.h5ad"
    tiny_adata().write_h5ad(h5ad)
    dense = tiny_adata()
    dense.X = dense.X.toarray()
    dense.write_h5ad(d / "dense.h5ad")
    q = tiny_adata(n_cells=40, seed=1)
    q.obs["batch"] = q.obs["batch"].astype(str).map(lambda b: f"query_{b}")
    q.write_h5ad(query)
    register(h5ad, d / "registry.json", batch_key="batch", labels_key="label")
    prepare(h5ad, d / "registry.json", d / "prepared", batch_size=32)
    train(d / "prepared", d / "registry.json", d / "model", d / "history.csv", latent_out=d / "latent.npy",
          checkpoint_dir=d / "ckpt", model_params=MODEL, train_params=TRAIN, accelerator="cpu")
    export(d / "model", h5ad, d / "embedding.h5ad", latent=d / "latent.npy")
    report(d / "history.csv", d / "latent.npy", d / "prepared", d / "registry.json", d / "report")
    integration(d / "latent.npy", d / "prepared", d / "registry.json", d / "integration", metrics=False)
    summarize([d / "report" / "metrics.json"], d / "summary.tsv")
    return Ctx(d, h5ad, query, d / "registry.json", d / "prepared", d / "model", d / "history.csv",
               d / "latent.npy", d / "embedding.h5ad", d / "report", d / "integration", d / "summary.tsv")


# ---- the cases: (outputs already there, command line, filesystem space to leave) ------------
@dataclass
class Case:
    earlier: list[str]  # names in ctx.d copied onto the filesystem before it is filled
    args: Callable[[Ctx, Path], list]
    leave: int = 0


def _train_args(c: Ctx, fs: Path) -> list:
    return ["train", "--prepared", c.prepared, "--registry", c.registry, "--model", fs / "model",
            "--history", fs / "history.csv", "--latent", fs / "latent.npy", "--checkpoint-dir", fs / "ckpt",
            "--checkpoint-every-seconds", "0", "--model-params", '{"n_hidden": 256, "n_latent": 4}',
            "--train-params", '{"max_epochs": 1}', "--accelerator", "cpu"]


CASES = {
    "simulate": Case(["data.h5ad"], lambda c, fs: [
        "simulate", "--output", fs / "data.h5ad", "--params", '{"n_cells": 200, "n_genes": 50}']),
    "register": Case(["registry.json"], lambda c, fs: [
        "register", "--input", c.h5ad, "--output", fs / "registry.json", "--batch-key", "batch"]),
    "prepare": Case(["prepared"], lambda c, fs: [
        "prepare", "--input", c.h5ad, "--registry", c.registry, "--output", fs / "prepared", "--batch-size", "32"]),
    # Dense counts: the prepared size is not known beforehand; numpy's short write is translated.
    "prepare_dense": Case(["prepared"], lambda c, fs: [
        "prepare", "--input", c.d / "dense.h5ad", "--registry", c.registry, "--output", fs / "prepared",
        "--batch-size", "32"]),
    "train": Case(["model", "history.csv", "latent.npy"], _train_args),
    # Room for the checkpoint folder's small files but not for a checkpoint: the disk fills in
    # the middle of training (torch.save), where no size was known beforehand.
    "train_checkpoint": Case(["model", "history.csv", "latent.npy"], _train_args, leave=48 << 10),
    "export": Case(["embedding.h5ad"], lambda c, fs: [
        "export", "--model", c.model, "--input", c.h5ad, "--latent", c.latent, "--output", fs / "embedding.h5ad"]),
    "report": Case(["report"], lambda c, fs: [
        "report", "--history", c.history, "--latent", c.latent, "--prepared", c.prepared, "--registry",
        c.registry, "--output", fs / "report"]),
    "integration": Case(["integration"], lambda c, fs: [
        "integration", "--latent", c.latent, "--prepared", c.prepared, "--registry", c.registry,
        "--output", fs / "integration", "--no-metrics"]),
    "summarize": Case(["summary.tsv"], lambda c, fs: [
        "summarize", "--metrics", c.report / "metrics.json", "--output", fs / "summary.tsv"]),
    "map_query": Case(["embedding.h5ad"], lambda c, fs: [
        "map-query", "--reference", c.model, "--input", c.query, "--model", fs / "query_model",
        "--history", fs / "query_history.csv", "--output", fs / "embedding.h5ad",
        "--train-params", '{"max_epochs": 1, "batch_size": 16}', "--accelerator", "cpu"]),
}


@pytest.fixture(scope="module")
def outcomes(can_mount, ctx, tmp_path_factory) -> dict:
    """Run every case on its own full filesystem (two at a time); what was there before and after."""

    def run(name):
        case = CASES[name]
        fs = tmp_path_factory.mktemp(name) / "fs"
        with mounted(fs):
            for item in case.earlier:
                src = ctx.d / item
                (shutil.copytree if src.is_dir() else shutil.copy2)(src, fs / item)
            fill(fs, case.leave)
            before = {item: sha256(fs / item) for item in case.earlier}
            files_before = listing(fs)
            proc = snakevi(*case.args(ctx, fs))
            after = {item: sha256(fs / item) for item in case.earlier}
            return name, (fs, proc, before, after, files_before, listing(fs))

    with ThreadPoolExecutor(max_workers=2) as pool:
        return dict(pool.map(run, CASES))


@pytest.mark.parametrize("case", list(CASES))
def test_full_disk_fails_clearly_and_cleanly(case, outcomes):
    fs, proc, before, after, files_before, files_after = outcomes[case]
    err = proc.stderr
    assert proc.returncode == 1, f"exit {proc.returncode}\n{err[-3000:]}"
    assert "Traceback" not in err, err[-3000:]
    assert "No space left on " in err and str(fs) in err, err[-3000:]
    assert re.search(r"needed (about|more than the) \d+\.\d (kB|MB)", err), err[-3000:]
    assert files_after == files_before, "the failed step left files behind (temporaries or a partial output)"
    assert after == before, "the failed step changed the output of the earlier run"


def test_stale_temporaries_of_a_killed_run_are_removed_by_the_next_run(ctx, tmp_path):
    """A killed export leaves ``.embedding.h5ad.<rand>.tmp.h5ad``: the next export removes it."""
    from snakevi._atomic import temp_prefix

    out = tmp_path / "embedding.h5ad"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    stale = [
        tmp_path / ".embedding.h5ad.k2j3_x9q.tmp.h5ad",  # as the versions before this check named them
        tmp_path / ".embedding.h5ad.k2j3_x9q.tmp",
        tmp_path / f"{temp_prefix(out)[: -len(str(os.getpid())) - 1]}{dead}-a1b2c3.tmp.h5ad",
    ]
    folder = tmp_path / ".embedding.h5ad.oldrun_1.tmp"  # a staged folder, with files in it
    for path in stale:
        path.write_bytes(b"partial")
    folder.mkdir()
    (folder / "part").write_bytes(b"partial")
    # A temporary of a process that is alive (this test) may be a write in progress: kept.
    live = tmp_path / f"{temp_prefix(out)}zz99.tmp.h5ad"
    live.write_bytes(b"in progress")
    other = tmp_path / ".embedding.h5ad.backup"  # not a temporary of ours: kept
    other.write_bytes(b"mine")
    sibling = tmp_path / ".embedding.h5ad.gz.k2j3_x9q.tmp"  # one of another output (embedding.h5ad.gz): kept
    sibling.write_bytes(b"theirs")
    proc = snakevi("export", "--model", ctx.model, "--input", ctx.h5ad, "--latent", ctx.latent, "--output", out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([out.name, live.name, other.name, sibling.name])


def test_no_space_inside_an_hdf5_write_is_translated_and_does_not_crash(can_mount, tmp_path):
    """Where no size was checked beforehand, h5py fails inside the write (its error texts carry
    "errno = 28"); the error is the clear one, the temporary goes, and the process exits with
    status 1 instead of HDF5's SIGSEGV at exit."""
    script = textwrap.dedent(f"""
        import sys
        sys.path[:0] = {[str(Path(__file__).parent)]!r}
        from rel_helpers import tiny_adata
        from snakevi._atomic import DiskFullError, atomic_path
        try:
            with atomic_path({str(tmp_path / "fs" / "big.h5ad")!r}) as tmp:
                tiny_adata(n_cells=3000, n_genes=200).write_h5ad(tmp.with_name(tmp.name + ".h5ad"))
        except DiskFullError as err:
            print("DiskFullError:", err)
            sys.exit(1)
    """)
    with mounted(tmp_path / "fs", "256k") as fs:
        proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=ENV, timeout=120)
        left = listing(fs)
    assert proc.returncode == 1, f"exit {proc.returncode}\n{proc.stderr[-3000:]}"
    assert f"DiskFullError: No space left on {fs}" in proc.stdout, proc.stdout + proc.stderr[-3000:]
    assert left == [], left
