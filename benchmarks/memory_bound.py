"""Train on prepared arrays larger than the memory the train job may use.

Builds a dataset by tiling one simulated block of cells (``--cells`` in all, written to the
.h5ad block by block), registers and prepares it without a limit, then runs ``snakevi train``
twice from a cold page cache: once without a limit and once inside a memory cgroup whose limit
(``--limit-mb``) is smaller than the prepared arrays. It prints (and with ``--json`` writes) the
prepared size, each run's wall time, peak anonymous RSS (what the process allocated itself),
peak RSS including mapped file pages, the cgroup's peak charge and how often the limit was hit,
and whether the two runs gave bit-identical latent representations.

The limit uses the cgroup v1 memory controller (``memory.limit_in_bytes``), as on the project's
machines; it needs root. Elsewhere the same check is, e.g.,
``systemd-run --scope -p MemoryMax=2G snakevi train ...``.

Usage::

    python benchmarks/memory_bound.py --cells 393216 --limit-mb 2048 --epochs 2 \\
        --work /tmp/memory_bound --json benchmarks/out/memory_bound.json

``tests/reliability/test_memory_bound.py`` runs it small (about 690 MB under 448 MB). The
results of the latest full run are in ``benchmarks/README.md``.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

#: One tile of cells: about 10% of entries non-zero, so the prepared counts are about
#: 10 MB per 1000 cells with 2000 genes.
TILE = {"n_cells": 4096, "n_genes": 2000, "n_batches": 2, "n_groups": 3, "seed": 0, "library_log_mean": 9.5}

#: prctl option that makes the kernel signal a child when its parent exits (linux/prctl.h).
_PR_SET_PDEATHSIG = 1


class CgroupUnavailable(RuntimeError):
    """The cgroup v1 memory controller cannot be used from this process."""


def memory_cgroup_root() -> Path:
    """This process's cgroup v1 memory folder, where a child group can be made.

    Raises
    ------
    CgroupUnavailable
        No writable v1 memory controller (cgroup v2 only, or not root).
    """
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(","):
            folder = Path("/sys/fs/cgroup/memory") / path.lstrip("/")
            if folder.is_dir() and os.access(folder, os.W_OK):
                return folder
            raise CgroupUnavailable(f"{folder} is not writable (run as root)")
    raise CgroupUnavailable("no cgroup v1 memory controller in /proc/self/cgroup")


def tiled_h5ad(path: Path, n_cells: int) -> Path:
    """Write ``n_cells`` cells (copies of one simulated tile, renamed) to ``path``, tile by tile.

    Only one tile is ever in memory; an existing file of the right size is reused.
    """
    import anndata as ad
    import h5py
    import pandas as pd
    from anndata.io import sparse_dataset, write_elem

    from snakevi._atomic import atomic_path
    from snakevi.data import simulate

    tile_cells = TILE["n_cells"]
    if n_cells % tile_cells:
        raise SystemExit(f"--cells must be a multiple of {tile_cells}, got {n_cells}")
    if path.exists() and ad.read_h5ad(path, backed="r").n_obs == n_cells:
        return path
    tile = simulate(**TILE)
    repeats = n_cells // tile_cells
    obs = pd.concat([tile.obs] * repeats)
    obs.index = [f"cell{i}" for i in range(n_cells)]
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        f.attrs["encoding-type"], f.attrs["encoding-version"] = "anndata", "0.1.0"
        write_elem(f, "obs", obs)
        write_elem(f, "var", tile.var)
        write_elem(f, "X", tile.X)
        matrix = sparse_dataset(f["X"])
        for _ in range(repeats - 1):
            matrix.append(tile.X)
    return path


def snakevi(*args: str, log: Path) -> None:
    """Run ``python -m snakevi ARGS`` (no limit), stopping the benchmark if it fails."""
    done = subprocess.run([sys.executable, "-m", "snakevi", *args, "--log", str(log)],
                          capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"snakevi {args[0]} failed ({done.returncode}):\n{done.stderr[-3000:]}")


def evict_from_page_cache(folder: Path) -> None:
    """Drop ``folder``'s files from the page cache.

    Pages stay charged to the cgroup that read them first: files prepare has just written
    would be read by a limited run at no charge, so each run starts from a cold cache.
    """
    for file in folder.rglob("*"):
        if file.is_file():
            fd = os.open(file, os.O_RDONLY)
            try:
                os.fsync(fd)
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def run_measured(cmd: list[str], limit_bytes: int | None, log: Path) -> dict:
    """Run ``cmd`` (inside a fresh memory cgroup when ``limit_bytes``) and measure its memory."""
    group = None
    if limit_bytes is not None:
        group = memory_cgroup_root() / f"snakevi-bound-{os.getpid()}-{time.monotonic_ns()}"
        group.mkdir()
        (group / "memory.limit_in_bytes").write_text(str(limit_bytes))
    procs = None if group is None else str(group / "cgroup.procs")

    def enter_group() -> None:  # runs in the child before exec, so torch is charged too
        # A benchmark (or test) that is killed must not leave the train job running.
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if procs is not None:
            with open(procs, "w") as fh:
                fh.write(str(os.getpid()))

    peak_anon = [0]
    start = time.monotonic()
    try:
        with open(log, "w") as err:
            child = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, preexec_fn=enter_group)
            watcher = threading.Thread(target=_watch_anon, args=(child.pid, peak_anon, child), daemon=True)
            watcher.start()
            try:
                _, status, usage = os.wait4(child.pid, 0)
            except BaseException:
                child.kill()
                child.wait()
                raise
            child.returncode = os.waitstatus_to_exitcode(status)
            watcher.join()
    except BaseException:
        if group is not None:
            group.rmdir()
        raise
    result = {
        "rc": child.returncode,
        "wall_s": round(time.monotonic() - start, 1),
        "peak_rss_anon_mb": round(peak_anon[0] / 2**20),
        "peak_rss_mb": round(usage.ru_maxrss / 1024),  # ru_maxrss is in KiB on Linux
    }
    if group is not None:
        result["limit_mb"] = limit_bytes >> 20
        result["cgroup_peak_mb"] = int((group / "memory.max_usage_in_bytes").read_text()) >> 20
        result["limit_hits"] = int((group / "memory.failcnt").read_text())
        group.rmdir()
    return result


def _watch_anon(pid: int, peak: list, child: subprocess.Popen) -> None:
    """Sample the child's ``RssAnon`` every 20 ms until it exits (the kernel keeps no peak of it)."""
    status = Path(f"/proc/{pid}/status")
    while child.returncode is None:
        try:
            for line in status.read_text().splitlines():
                if line.startswith("RssAnon:"):
                    peak[0] = max(peak[0], int(line.split()[1]) * 1024)
        except (FileNotFoundError, ProcessLookupError):
            return
        time.sleep(0.02)


def prepared_bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*.npy"))


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=393216, help="cells in all (multiple of 4096)")
    parser.add_argument("--limit-mb", type=int, default=2048, help="memory limit of the limited run")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--work", type=Path, default=Path("/tmp/snakevi_memory_bound"))
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)

    memory_cgroup_root()  # fail before the slow part when no limit can be set
    work = args.work
    h5ad = tiled_h5ad(work / f"tiled_{args.cells}.h5ad", args.cells)
    registry, prepared = work / "registry.json", work / "prepared"
    snakevi("register", "--input", str(h5ad), "--output", str(registry), "--batch-key", "batch",
            log=work / "register.log")
    snakevi("prepare", "--input", str(h5ad), "--registry", str(registry), "--output", str(prepared),
            "--batch-size", str(args.batch_size), log=work / "prepare.log")
    size = prepared_bytes(prepared)
    if size <= args.limit_mb << 20:
        raise SystemExit(f"the prepared arrays ({size >> 20} MB) fit in --limit-mb {args.limit_mb}; "
                         "raise --cells or lower the limit")

    runs = {}
    for name, limit in (("unlimited", None), ("limited", args.limit_mb << 20)):
        out = work / name
        shutil.rmtree(out, ignore_errors=True)  # a checkpoint left there would be resumed
        out.mkdir(parents=True)
        evict_from_page_cache(prepared)
        cmd = [sys.executable, "-m", "snakevi", "train", "--prepared", str(prepared),
               "--registry", str(registry), "--model", str(out / "model"), "--history", str(out / "history.csv"),
               "--latent", str(out / "latent.npy"), "--checkpoint-dir", str(out / "checkpoints"),
               "--threads", str(args.threads), "--seed", "0",
               "--train-params", json.dumps({"max_epochs": args.epochs})]
        runs[name] = run_measured(cmd, limit, out / "train.log")
        if runs[name]["rc"]:
            tail = (out / "train.log").read_text()[-3000:]
            raise SystemExit(f"the {name} train run failed ({runs[name]['rc']}):\n{tail}")
    same = np.array_equal(np.load(work / "unlimited" / "latent.npy"), np.load(work / "limited" / "latent.npy"))
    import torch

    result = {
        "cells": args.cells, "genes": TILE["n_genes"], "prepared_mb": size >> 20, "epochs": args.epochs,
        "batch_size": args.batch_size, "runs": runs, "latent_identical": bool(same),
        "limited_over_unlimited_wall": round(runs["limited"]["wall_s"] / runs["unlimited"]["wall_s"], 2),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.release()}",
        "versions": {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__},
    }
    print(json.dumps(result, indent=1))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    return result


if __name__ == "__main__":
    main()
