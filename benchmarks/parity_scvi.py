#!/usr/bin/env python
"""Train scvi-tools 1.4.2 and snakevi side by side on one dataset and compare final metrics.

Both train a default SCVI (n_hidden 128, n_latent 10, ZINB, batch 128, validation every
epoch) with the same seed, split, epochs and thread count. scvi-tools runs in its own
environment (``benchmarks/setup_scvi_env.sh`` makes ``.venv-scvi``) through
``scvi_tools_reference.py``; snakevi runs in this process on the *same* train/validation
indices, read back from the scvi-tools run.

    envs/venv-run python benchmarks/parity_scvi.py \
        --data ../shared/data/kang_pbmc_ctrl_8donors.h5ad --batch-key donor --epochs 50

Prints final ``elbo_validation`` and ``reconstruction_loss_validation`` of both, their
relative difference, and s/epoch; writes everything to ``benchmarks/out/parity_<name>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
METRICS = ("elbo_validation", "reconstruction_loss_validation", "kl_local_validation", "elbo_train")


def _parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True)
    p.add_argument("--batch-key", default=None)
    p.add_argument("--epochs", type=int, default=50)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out-dir", default=str(HERE / "out"))
    p.add_argument("--reuse-scvi", action="store_true", help="reuse an existing scvi-tools JSON for these settings")
    return p.parse_args(argv)


def run_scvi_tools(args, out_json: Path) -> dict:
    """Train with scvi-tools in .venv-scvi (made on demand) and return its JSON result."""
    if not (args.reuse_scvi and out_json.is_file()):
        subprocess.run(["bash", str(HERE / "setup_scvi_env.sh")], check=True)
        cmd = [
            str(ROOT / ".venv-scvi" / "bin" / "python"), str(HERE / "scvi_tools_reference.py"),
            "--data", args.data, "--epochs", str(args.epochs), "--seed", str(args.seed),
            "--threads", str(args.threads), "--out", str(out_json),
        ]
        if args.batch_key:
            cmd += ["--batch-key", args.batch_key]
        subprocess.run(cmd, check=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    return json.loads(out_json.read_text())


def run_snakevi(args, split: dict) -> dict:
    """Train snakevi on the given split; return history, timings and versions."""
    import anndata
    import numpy as np
    import torch

    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    from snakevi.model import SCVI
    import snakevi

    t_import = time.perf_counter() - t0
    adata = anndata.read_h5ad(args.data)
    SCVI.setup_anndata(adata, batch_key=args.batch_key)
    model = SCVI(adata, seed=args.seed)
    external = [np.asarray(split[k], dtype=np.int64) for k in ("train_indices", "validation_indices", "test_indices")]
    t0 = time.perf_counter()
    model.train(
        max_epochs=args.epochs, batch_size=128, check_val_every_n_epoch=1,
        external_indexing=external, enable_progress_bar=False, seed=args.seed,
    )
    t_train = time.perf_counter() - t0
    hist = model.history
    return {
        "snakevi_version": snakevi.__version__,
        "torch_version": torch.__version__,
        "import_time_s": t_import,
        "train_time_total_s": t_train,
        "s_per_epoch_from_total": t_train / len(hist),
        "final": {m: float(hist[m].iloc[-1]) for m in METRICS if m in hist},
        "history": {m: [float(v) for v in hist[m]] for m in METRICS if m in hist},
    }


def main(argv=None) -> int:
    args = _parse_args(argv)
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    name = f"{Path(args.data).stem}_{args.epochs}ep_seed{args.seed}"
    scvi = run_scvi_tools(args, out_dir / f"scvi_{name}.json")
    ours = run_snakevi(args, scvi)

    rows = []
    for metric in METRICS:
        a, b = scvi["final"].get(metric), ours["final"].get(metric)
        if a is None or b is None:
            continue
        rows.append((metric, a, b, (b - a) / abs(a)))
    lines = [
        f"# parity: {Path(args.data).name}, batch_key={args.batch_key}, {args.epochs} epochs, seed {args.seed}, "
        f"{args.threads} threads",
        f"# machine: {platform.machine()} {os.cpu_count()} cores; python {platform.python_version()}; "
        f"scvi-tools {scvi['scvi_version']} (torch {scvi['torch_version']}); snakevi {ours['snakevi_version']} "
        f"(torch {ours['torch_version']})",
        f"{'metric':34s} {'scvi-tools':>12s} {'snakevi':>12s} {'rel.diff':>9s}",
    ]
    lines += [f"{m:34s} {a:12.3f} {b:12.3f} {d:+9.2%}" for m, a, b, d in rows]
    lines.append(
        f"{'s/epoch (total/epochs)':34s} {scvi['s_per_epoch_from_total']:12.3f} {ours['s_per_epoch_from_total']:12.3f} "
        f"{ours['s_per_epoch_from_total'] / scvi['s_per_epoch_from_total']:9.2f}x"
    )
    lines.append(f"{'import after torch (s)':34s} {scvi['import_time_scvi_s']:12.2f} {ours['import_time_s']:12.2f}")
    report = "\n".join(lines)
    print(report)
    (out_dir / f"parity_{name}.json").write_text(
        json.dumps({"scvi_tools": {k: scvi[k] for k in ("scvi_version", "final", "s_per_epoch_from_total")},
                    "snakevi": ours, "table": report}, indent=1)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
