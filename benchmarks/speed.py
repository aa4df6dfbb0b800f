#!/usr/bin/env python
"""Training speed: snakevi vs scvi-tools vs a bare PyTorch loop, interleaved in one run.

Usage (from the repository root; scvi-tools comes from ``bash benchmarks/setup_scvi_env.sh``)::

    envs/venv-run python benchmarks/speed.py                      # 10k and 50k cells, batch 128 and 1024
    envs/venv-run python benchmarks/speed.py --cells 10000 --batch-sizes 128 --repeats 1
    git worktree add ../before <commit>; envs/venv-run python benchmarks/speed.py --baseline-src ../before

For each dataset and batch size, every repeat runs each system once in a fresh process
(``speed_worker.py``), the order rotating between repeats so that drift in the machine's speed
does not favour one system. All three train scVI's default network (n_hidden 128, n_latent 10,
ZINB, gene dispersion, batch one-hot in the decoder) on the same simulated counts with the same
split sizes (90/10), hyperparameters, epochs, threads and seed, validating every epoch.

``--systems ... bare-kept-memory`` adds the bare loop with the host-memory setting snakevi's
trainer applies (``snakevi.train.host_memory``: glibc keeps freed activations for reuse), so the
share of snakevi's lead that comes from that setting alone can be read off.

``--baseline-src DIR`` adds ``snakevi-baseline``: snakevi imported from ``DIR/src`` (another
commit's checkout) in the same interleaved run, so a change is measured against the code before it.

Printed per system: median s/epoch (over every epoch but the first of each process), its ratio
to the bare loop, peak RSS, import time (torch + the library), start-up (process launch to the
first epoch: interpreter, imports, reading the h5ad, set-up, model build) and the final
``elbo_validation``. The table also goes to ``benchmarks/out/speed_<date>.md`` and every raw
measurement to the matching ``.json``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SYSTEMS = ("snakevi", "scvi-tools", "bare")
#: The bare loop with snakevi's host-memory setting; only when asked for (``--systems``).
BARE_KEPT = "bare-kept-memory"
#: snakevi of another checkout (``--baseline-src``), side by side with this one: before/after a change.
BASELINE = "snakevi-baseline"


def _args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cells", type=int, nargs="+", default=[10_000, 50_000])
    p.add_argument("--genes", type=int, default=2_000)
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[128, 1024])
    p.add_argument("--epochs", type=int, default=5, help="epochs per process (the first is not timed)")
    p.add_argument("--repeats", type=int, default=2, help="processes per system, dataset and batch size")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--systems", nargs="+", choices=(*SYSTEMS, BARE_KEPT), default=list(SYSTEMS))
    p.add_argument("--scvi-python", default=str(ROOT / ".venv-scvi" / "bin" / "python"),
                   help="interpreter of the scvi-tools environment (see setup_scvi_env.sh)")
    p.add_argument("--data-dir", default=str(HERE / "out" / "data"))
    p.add_argument("--out-dir", default=str(HERE / "out"))
    p.add_argument("--baseline-src", default=None,
                   help="also time snakevi from this checkout's src/ (e.g. a `git worktree` of an earlier "
                        "commit) as 'snakevi-baseline', interleaved with the others")
    args = p.parse_args(argv)
    if args.baseline_src:
        args.systems = [*args.systems, BASELINE]
    return args


def _python_for(system: str, args) -> str | None:
    if system != "scvi-tools":  # snakevi, its baseline checkout (PYTHONPATH) and the bare loops
        return sys.executable
    return args.scvi_python if Path(args.scvi_python).exists() else None


def _measure(system: str, data: Path, batch_size: int, args) -> dict:
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as fh:
        out = fh.name
    cmd = [_python_for(system, args), str(HERE / "speed_worker.py"), "--system",
           "snakevi" if system == BASELINE else system,
           "--data", str(data), "--epochs", str(args.epochs), "--batch-size", str(batch_size),
           "--threads", str(args.threads), "--seed", str(args.seed), "--out", out,
           "--launched-at", repr(time.time())]
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    if system == "scvi-tools":
        env.pop("PYTHONPATH", None)  # the comparison environment must not see snakevi
    if system == BASELINE:  # ahead of the editable install's path entry
        env["PYTHONPATH"] = str(Path(args.baseline_src).resolve() / "src")
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{system} (batch {batch_size}, {data.name}) failed:\n{proc.stderr[-3000:]}")
    with open(out) as fh:
        result = json.load(fh)
    os.unlink(out)
    return result


def _summarise(runs: list[dict]) -> dict:
    timed = [t for r in runs for t in r["epoch_times"][1:]]
    return {
        "s_per_epoch": statistics.median(timed),
        "peak_rss_mb": max(r["peak_rss_mb"] for r in runs),
        "import_s": statistics.median(r["import_s"] for r in runs),
        "startup_s": statistics.median(r["startup_s"] for r in runs),
        "elbo_validation": runs[-1]["elbo_validation"],
        "n_epochs_timed": len(timed),
    }


def _versions(args) -> dict:
    import torch

    versions = {"python": platform.python_version(), "torch": torch.__version__,
                "machine": f"{platform.machine()}, {os.cpu_count()} cores", "threads": args.threads}
    try:
        from importlib.metadata import version

        versions["snakevi"] = version("snakevi")
    except Exception:  # noqa: BLE001 - only a label
        versions["snakevi"] = "?"
    scvi_python = _python_for("scvi-tools", args)
    if scvi_python:
        code = "import importlib.metadata as m; print(m.version('scvi-tools'), m.version('lightning'))"
        out = subprocess.run([scvi_python, "-c", code], capture_output=True, text=True).stdout.split()
        if len(out) == 2:
            versions["scvi-tools"], versions["lightning"] = out
    return versions


def main(argv=None) -> int:
    args = _args(argv)
    from bench_data import simulated_h5ad  # this script's folder is on sys.path when it runs

    systems = [s for s in args.systems if _python_for(s, args) is not None]
    for s in set(args.systems) - set(systems):
        print(f"[speed] {s}: skipped, no interpreter at {args.scvi_python} "
              "(run `bash benchmarks/setup_scvi_env.sh`)", file=sys.stderr)
    versions = _versions(args)
    rows, raw = [], []
    for n_cells in args.cells:
        data = simulated_h5ad(n_cells, args.genes, seed=args.seed, folder=args.data_dir)
        for batch_size in args.batch_sizes:
            runs: dict[str, list[dict]] = {s: [] for s in systems}
            for rep in range(args.repeats):
                order = systems[rep % len(systems):] + systems[:rep % len(systems)]
                for system in order:
                    print(f"[speed] {n_cells} cells, batch {batch_size}, repeat {rep + 1}: {system}",
                          file=sys.stderr, flush=True)
                    result = _measure(system, data, batch_size, args)
                    result.update(n_cells=n_cells, repeat=rep)
                    runs[system].append(result)
                    raw.append(result)
            summary = {s: _summarise(r) for s, r in runs.items()}
            bare = summary.get("bare", {}).get("s_per_epoch")
            for system, stats in summary.items():
                rows.append({"cells": n_cells, "batch_size": batch_size, "system": system, **stats,
                             "ratio_to_bare": stats["s_per_epoch"] / bare if bare else None})
    table = _table(rows, versions, args)
    print(table)
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.date.today().isoformat()
    (out_dir / f"speed_{stamp}.md").write_text(table + "\n")
    (out_dir / f"speed_{stamp}.json").write_text(json.dumps({"versions": versions, "rows": rows, "raw": raw},
                                                           indent=1))
    return 0


def _table(rows: list[dict], versions: dict, args) -> str:
    head = (f"{datetime.date.today()} | {versions['machine']}, {versions['threads']} torch threads | "
            f"Python {versions['python']}, torch {versions['torch']}, snakevi {versions['snakevi']}, "
            f"scvi-tools {versions.get('scvi-tools', 'n/a')} (lightning {versions.get('lightning', 'n/a')}) | "
            f"{args.genes} genes, {args.epochs} epochs x {args.repeats} processes per system, seed {args.seed}")
    lines = [head, "",
             "| cells | batch | system | s/epoch (median) | x bare loop | peak RSS (MB) | import (s) | start-up (s) | elbo_validation |",
             "|---:|---:|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        ratio = f"{r['ratio_to_bare']:.3f}" if r["ratio_to_bare"] else "n/a"
        lines.append(f"| {r['cells']:,} | {r['batch_size']} | {r['system']} | {r['s_per_epoch']:.3f} | {ratio} | "
                     f"{r['peak_rss_mb']:.0f} | {r['import_s']:.2f} | {r['startup_s']:.2f} | {r['elbo_validation']:.2f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
