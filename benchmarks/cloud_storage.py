#!/usr/bin/env python
"""What object storage costs: the demo through S3 vs local, and a checkpoint's upload while training.

Usage (from the repository root; needs the test requirements: moto[server], the S3 plugin)::

    envs/venv-run python benchmarks/cloud_storage.py                 # 3 demo pairs, 10k cells x 2,000 genes
    envs/venv-run python benchmarks/cloud_storage.py --demo-runs 1 --epochs 5

1. Demo wall time: the shipped config (``config/config.yaml``) run fresh with the local
   executor, once on the local filesystem and once with ``--default-storage-provider s3`` against
   moto's S3 server on the loopback, the two alternating (``--demo-runs`` pairs), so that a
   drift of the machine's speed does not favour one. Loopback S3 has no network latency: the
   difference is Snakemake's and the plugin's own work per file (inventory, upload, download).
2. Checkpoint upload: ``snakevi train`` on 10k simulated cells x 2,000 genes (scVI's default
   network), a checkpoint after every epoch, without and with ``--checkpoint-store s3://...``
   (alternating). From the mirror's log line: the upload time per checkpoint (in the
   background), the checkpoint's size and how long the training loop waited per checkpoint;
   and the median s/epoch of both, whose ratio is what the uploads cost the training.

Prints a Markdown table and writes it with the raw numbers to ``benchmarks/out/cloud_storage_<date>.md/.json``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT / "tests"))  # the loopback S3 server the tests use

from bench_data import simulated_h5ad  # noqa: E402
from s3_server import ACCESS_KEY, SECRET_KEY, s3_server  # noqa: E402

BUCKET = "bench"
BIN = Path(sys.executable).parent


def _env(server=None) -> dict:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
           "PYTHONWARNINGS": "ignore::DeprecationWarning"}
    if server is not None:
        env.update(SNAKEMAKE_STORAGE_S3_ENDPOINT_URL=server.endpoint, SNAKEMAKE_STORAGE_S3_ACCESS_KEY=ACCESS_KEY,
                   SNAKEMAKE_STORAGE_S3_SECRET_KEY=SECRET_KEY, SNAKEMAKE_STORAGE_S3_REGION="us-east-1")
    return env


def demo_run(server, prefix: str | None) -> float:
    """Seconds of one fresh demo run (local files, or every file under s3://bench/<prefix>)."""
    work = Path(tempfile.mkdtemp(prefix="snakevi-demo-"))
    try:
        (work / "config").mkdir()
        shutil.copy(ROOT / "config" / "config.yaml", work / "config" / "config.yaml")
        storage = [] if prefix is None else [
            "--default-storage-provider", "s3", "--default-storage-prefix", f"s3://{BUCKET}/{prefix}",
            "--storage-s3-endpoint-url", server.endpoint, "--storage-s3-access-key", ACCESS_KEY,
            "--storage-s3-secret-key", SECRET_KEY]
        started = time.perf_counter()
        proc = subprocess.run([str(BIN / "snakemake"), "-s", str(ROOT / "Snakefile"), "-d", str(work), "--cores", "2",
                               *storage], env=_env(), capture_output=True, text=True)
        seconds = time.perf_counter() - started
        if proc.returncode != 0:
            raise RuntimeError(f"demo run failed:\n{proc.stderr[-3000:]}")
        return seconds
    finally:
        shutil.rmtree(work, ignore_errors=True)


def prepared(folder: Path, n_cells: int, n_genes: int) -> tuple[Path, Path]:
    data = simulated_h5ad(n_cells, n_genes, folder=folder)
    registry, prep = folder / "registry.json", folder / "prepared"
    if not prep.exists():
        for step in (["register", "--input", str(data), "--output", str(registry), "--batch-key", "batch"],
                     ["prepare", "--input", str(data), "--registry", str(registry), "--output", str(prep)]):
            subprocess.run([str(BIN / "snakevi"), *step], env=_env(), check=True, capture_output=True)
    return registry, prep


def train_run(server, folder: Path, registry: Path, prep: Path, epochs: int, threads: int, store: str | None) -> dict:
    """One ``snakevi train`` with a checkpoint after every epoch; its epoch times and upload numbers."""
    out = Path(tempfile.mkdtemp(prefix="snakevi-train-", dir=folder))
    try:
        cmd = [str(BIN / "snakevi"), "train", "--prepared", str(prep), "--registry", str(registry),
               "--model", str(out / "model"), "--history", str(out / "history.csv"), "--threads", str(threads),
               "--checkpoint-every-seconds", "0", "--train-params", json.dumps({"max_epochs": epochs})]
        if store is not None:
            cmd += ["--checkpoint-store", store]
        proc = subprocess.run(cmd, env=_env(server), capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"train failed:\n{proc.stderr[-3000:]}")
        epoch_s = [float(s) for s in re.findall(r"epoch \d+/\d+ \(([\d.]+) s\)", proc.stderr)]
        row = {"s_per_epoch": statistics.median(epoch_s[1:]), "epochs": epoch_s}
        stored = re.search(r"stored (\d+) checkpoints .* \(upload median ([\d.]+) s, max ([\d.]+) s; ([\d.]+) MB each; "
                           r"training waited ([\d.]+) ms per checkpoint\)", proc.stderr)
        if store is not None:
            if stored is None:
                raise RuntimeError(f"no upload summary in the log:\n{proc.stderr[-3000:]}")
            row.update(stored=int(stored.group(1)), upload_median_s=float(stored.group(2)),
                       upload_max_s=float(stored.group(3)), checkpoint_mb=float(stored.group(4)),
                       training_waited_ms=float(stored.group(5)))
        return row
    finally:
        shutil.rmtree(out, ignore_errors=True)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--demo-runs", type=int, default=3, help="pairs of demo runs (local, S3)")
    p.add_argument("--cells", type=int, default=10_000)
    p.add_argument("--genes", type=int, default=2_000)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--train-runs", type=int, default=3, help="pairs of train runs (no store, S3 store)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--data-dir", default=str(HERE / "out" / "data"))
    args = p.parse_args(argv)
    work = Path(args.data_dir)
    work.mkdir(parents=True, exist_ok=True)
    result = {"date": datetime.date.today().isoformat(), "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
              "python": platform.python_version(), "args": vars(args), "demo": {"local": [], "s3": []},
              "train": {"local": [], "s3": []}}
    from importlib.metadata import version

    result["versions"] = {name: version(name) for name in ("snakemake", "snakemake-storage-plugin-s3", "moto", "boto3",
                                                          "torch")}
    with s3_server(work / "moto.log") as server:
        server.client().create_bucket(Bucket=BUCKET)
        for i in range(args.demo_runs):
            for kind in (("local", "s3") if i % 2 == 0 else ("s3", "local")):
                seconds = demo_run(server, None if kind == "local" else f"demo{i}")
                result["demo"][kind].append(seconds)
                print(f"[cloud] demo {kind} run {i + 1}: {seconds:.1f} s", file=sys.stderr, flush=True)
        registry, prep = prepared(work / f"ckpt_{args.cells}x{args.genes}", args.cells, args.genes)
        for i in range(args.train_runs):
            for kind in (("local", "s3") if i % 2 == 0 else ("s3", "local")):
                store = None if kind == "local" else f"s3://{BUCKET}/train{i}/checkpoints"
                row = train_run(server, work, registry, prep, args.epochs, args.threads, store)
                result["train"][kind].append(row)
                print(f"[cloud] train {kind} run {i + 1}: {row['s_per_epoch']:.3f} s/epoch", file=sys.stderr, flush=True)
    table = _table(result)
    print(table)
    out = HERE / "out" / f"cloud_storage_{result['date']}"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".md").write_text(table)
    out.with_suffix(".json").write_text(json.dumps(result, indent=1))
    return 0


def _table(r: dict) -> str:
    med = statistics.median
    local, s3 = med(r["demo"]["local"]), med(r["demo"]["s3"])
    t_local = med(row["s_per_epoch"] for row in r["train"]["local"])
    t_s3 = med(row["s_per_epoch"] for row in r["train"]["s3"])
    up = r["train"]["s3"]
    a = r["args"]
    return "\n".join([
        f"Object storage cost ({r['date']}; {r['machine']}; Python {r['python']}; "
        + ", ".join(f"{k} {v}" for k, v in r["versions"].items()) + "; moto's S3 server on 127.0.0.1)",
        "",
        "| measure | local | S3 | S3 / local |",
        "|---|---|---|---|",
        f"| demo workflow wall time, median of {len(r['demo']['local'])} (s) | {local:.1f} | {s3:.1f} | {s3 / local:.2f} |",
        f"| train {a['cells']:,} cells x {a['genes']:,} genes, s/epoch with a checkpoint every epoch, median of "
        f"{len(up)} runs | {t_local:.3f} | {t_s3:.3f} | {t_s3 / t_local:.2f} |",
        "",
        f"Checkpoint: {up[0]['checkpoint_mb']:.1f} MB; upload (background) median "
        f"{med(row['upload_median_s'] for row in up):.3f} s, max {max(row['upload_max_s'] for row in up):.3f} s; "
        f"the training loop waited {med(row['training_waited_ms'] for row in up):.2f} ms per checkpoint; "
        f"{sum(row['stored'] for row in up)} checkpoints stored in all.",
        "",
    ])


if __name__ == "__main__":
    raise SystemExit(main())
