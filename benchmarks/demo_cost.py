#!/usr/bin/env python
"""Fixed cost of the demo workflow: its wall time minus the time spent in training epochs.

Usage (from the repository root)::

    envs/venv-run python benchmarks/demo_cost.py            # 3 fresh runs of the default config

Each run copies ``config/config.yaml`` into a new temporary folder and runs
``snakemake --cores 2`` there with this repository's ``Snakefile`` (so nothing is reused
from an earlier run), then reads each job's ``benchmark:`` file and the train log's per-epoch
times. Fixed cost = total wall time - sum of the epoch times: interpreter and import times,
reading and writing files, Snakemake's own start-up and scheduling.
"""

from __future__ import annotations

import argparse
import glob
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def one_run(cores: int) -> dict:
    """One fresh demo run; seconds per job, per epoch, and in total."""
    work = Path(tempfile.mkdtemp(prefix="snakevi-demo-"))
    try:
        (work / "config").mkdir()
        shutil.copy(ROOT / "config" / "config.yaml", work / "config" / "config.yaml")
        env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
        t0 = time.perf_counter()
        proc = subprocess.run(["snakemake", "-s", str(ROOT / "Snakefile"), "-d", str(work), "--cores", str(cores)],
                              env=env, capture_output=True, text=True)
        total = time.perf_counter() - t0
        if proc.returncode != 0:
            raise RuntimeError(f"snakemake failed:\n{proc.stderr[-3000:]}")
        jobs = {}
        for tsv in glob.glob(str(work / "**" / "benchmarks" / "*.tsv"), recursive=True):
            jobs[Path(tsv).stem] = float(Path(tsv).read_text().splitlines()[1].split("\t")[0])
        log = next(iter(glob.glob(str(work / "results" / "*" / "logs" / "train.log"))))
        epochs = [float(x) for x in re.findall(r"epoch \d+/\d+ \(([\d.]+) s\)", Path(log).read_text())]
        return {"total": total, "jobs": jobs, "epochs": epochs}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--cores", type=int, default=2)
    args = p.parse_args(argv)
    runs = [one_run(args.cores) for _ in range(args.runs)]
    for i, r in enumerate(runs, 1):
        fixed = r["total"] - sum(r["epochs"])
        jobs = ", ".join(f"{k} {v:.1f}" for k, v in sorted(r["jobs"].items()))
        # After train, export, report and integration share the cores: the jobs' times overlap,
        # so total minus their sum is not Snakemake's own time (it can even be negative).
        print(f"run {i}: total {r['total']:.1f} s, {len(r['epochs'])} epochs {sum(r['epochs']):.1f} s, "
              f"fixed {fixed:.1f} s | jobs (s): {jobs}; sum {sum(r['jobs'].values()):.1f}")
    fixed = [r["total"] - sum(r["epochs"]) for r in runs]
    print(f"fixed cost, median of {len(runs)}: {statistics.median(fixed):.1f} s (min {min(fixed):.1f}, max {max(fixed):.1f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
