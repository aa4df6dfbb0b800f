#!/usr/bin/env python
"""Memory and scale: the workflow's steps on 50,000 and 1,000,000 simulated cells.

Usage (from the repository root)::

    envs/venv-run python benchmarks/scale.py                       # 50k and 1M cells x 2,000 genes
    envs/venv-run python benchmarks/scale.py --cells 50000 --epochs 2

For each size it runs the ``snakevi`` command's steps as separate processes, exactly as the
workflow does — ``register`` (reads the .h5ad), ``prepare`` (streams it in row chunks into
memory-mappable arrays) and ``train`` (reads only the prepared arrays, memory-mapped) — and
prints each step's wall time and peak RSS (the process's own ``ru_maxrss``, from ``wait4``),
plus the train step's per-epoch time from its log. The datasets are simulated once with a
seed (``bench_data.py``) and cached in ``benchmarks/out/data``; the 1M one takes a few minutes
to simulate and about 1.3 GB of disk. Results go to ``benchmarks/out/scale_<date>.md``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cells", type=int, nargs="+", default=[50_000, 1_000_000])
    p.add_argument("--genes", type=int, default=2_000)
    p.add_argument("--epochs", type=int, default=1, help="training epochs per size")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-dir", default=str(HERE / "out" / "data"))
    p.add_argument("--work-dir", default=str(HERE / "out" / "scale"))
    return p.parse_args(argv)


def _run(cmd: list[str], env: dict) -> dict:
    """Run ``cmd``; its wall time and its own peak RSS in MB (``wait4`` gives one child's usage)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{output[-3000:]}")
    return {"wall_s": seconds, "peak_rss_mb": usage.ru_maxrss / 1024}


def _epoch_times(log_path: Path) -> list[float]:
    """Per-epoch seconds from the train step's log lines ``epoch i/n (t s): ...``."""
    pattern = re.compile(r"epoch \d+/\d+ \(([\d.]+) s\)")
    return [float(m.group(1)) for m in pattern.finditer(log_path.read_text())]


def measure(n_cells: int, args) -> dict:
    """Run register, prepare and train on the ``n_cells`` dataset; one dict of numbers."""
    from bench_data import simulated_h5ad  # this script's folder is on sys.path when it runs

    t0 = time.perf_counter()
    data = simulated_h5ad(n_cells, args.genes, seed=args.seed, folder=args.data_dir)
    simulate_s = time.perf_counter() - t0
    work = Path(args.work_dir) / f"{n_cells}"
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    snakevi = [sys.executable, "-m", "snakevi.cli"]
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    steps = {}
    steps["register"] = _run(snakevi + ["register", "--input", str(data), "--output", str(work / "registry.json"),
                                        "--batch-key", "batch", "--labels-key", "label"], env)
    steps["prepare"] = _run(snakevi + ["prepare", "--input", str(data), "--registry", str(work / "registry.json"),
                                       "--output", str(work / "prepared"), "--batch-size", str(args.batch_size),
                                       "--seed", str(args.seed)], env)
    train_params = {"max_epochs": args.epochs, "check_val_every_n_epoch": 1,
                    "early_stopping": False}
    steps["train"] = _run(snakevi + ["train", "--prepared", str(work / "prepared"), "--registry",
                                     str(work / "registry.json"), "--model", str(work / "model"),
                                     "--history", str(work / "history.csv"), "--train-params",
                                     json.dumps(train_params), "--seed", str(args.seed), "--threads",
                                     str(args.threads), "--accelerator", "cpu", "--log", str(work / "train.log")],
                          env)
    epochs = _epoch_times(work / "train.log")
    prepared_mb = sum(f.stat().st_size for f in (work / "prepared").iterdir()) / 2**20
    return {"cells": n_cells, "simulate_s": simulate_s, "h5ad_mb": data.stat().st_size / 2**20,
            "prepared_mb": prepared_mb, "steps": steps, "epoch_s": epochs}


def _table(results: list[dict], args) -> str:
    import torch

    head = (f"{datetime.date.today()} | {platform.machine()}, {os.cpu_count()} cores, {args.threads} torch threads | "
            f"Python {platform.python_version()}, torch {torch.__version__} | {args.genes} genes, batch "
            f"{args.batch_size}, {args.epochs} epoch(s), seed {args.seed}")
    lines = [head, "",
             "| cells | h5ad (MB) | prepared (MB) | register s / peak RSS MB | prepare s / peak RSS MB | "
             "train s / peak RSS MB | s/epoch | s/epoch per 1k cells |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        s = r["steps"]
        epoch = min(r["epoch_s"]) if r["epoch_s"] else float("nan")
        cells = " | ".join(f"{s[k]['wall_s']:.1f} / {s[k]['peak_rss_mb']:.0f}" for k in ("register", "prepare", "train"))
        lines.append(f"| {r['cells']:,} | {r['h5ad_mb']:.0f} | {r['prepared_mb']:.0f} | {cells} | {epoch:.1f} | "
                     f"{epoch / r['cells'] * 1000:.4f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    args = _args(argv)
    results = []
    for n in args.cells:
        print(f"[scale] {n} cells", file=sys.stderr, flush=True)
        results.append(measure(n, args))
    table = _table(results, args)
    print(table)
    out = HERE / "out"
    out.mkdir(exist_ok=True)
    stamp = datetime.date.today().isoformat()
    (out / f"scale_{stamp}.md").write_text(table + "\n")
    (out / f"scale_{stamp}.json").write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
