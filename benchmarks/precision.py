#!/usr/bin/env python
"""Mixed precision: float32 vs bf16-mixed (and 16-mixed on CUDA), cells/s and final ELBO, in one run.

Usage (from the repository root)::

    envs/venv-run python benchmarks/precision.py                       # CPU: 32 vs bf16-mixed
    envs/venv-run python benchmarks/precision.py --accelerator cuda    # a GPU: 32, bf16-mixed, 16-mixed
    envs/venv-run python benchmarks/precision.py --cells 50000 --batch-size 1024 --epochs 20

Every repeat trains scVI's default network once per precision, the order rotating between repeats,
on the same simulated counts, split, seed and epochs (on CUDA the data stays on the GPU,
``data_on_device="auto"``). Printed per precision: median s/epoch over every epoch but the first,
training cells/s, the ratio to float32, and the final ``elbo_validation`` with its relative
difference from float32's. The table also goes to ``benchmarks/out/precision_<date>.md`` and the
raw numbers to the matching ``.json``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_data import simulated_h5ad  # noqa: E402


def _args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cells", type=int, default=10_000)
    p.add_argument("--genes", type=int, default=2_000)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--epochs", type=int, default=6, help="epochs per training (the first is not timed)")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--accelerator", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--precisions", nargs="+", default=None,
                   help="default: 32 and bf16-mixed, and 16-mixed on cuda")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--data-dir", default=str(HERE / "out" / "data"))
    p.add_argument("--out-dir", default=str(HERE / "out"))
    return p.parse_args(argv)


class _EpochClock:
    """Callback: wall time of every epoch (synchronising CUDA so the time is the GPU's too)."""

    def __init__(self, device):
        self.device, self.times, self._start = device, [], None

    def _sync(self):
        import torch

        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def on_train_epoch_start(self, trainer, plan):
        self._sync()
        self._start = time.perf_counter()

    def on_train_epoch_end(self, trainer, plan):
        self._sync()
        self.times.append(time.perf_counter() - self._start)


def _train_once(adata, precision: str, args) -> dict:
    from snakevi.model import SCVI
    from snakevi.train.device import resolve_device

    clock = _EpochClock(resolve_device(args.accelerator, "auto"))
    model = SCVI(adata, seed=0)
    model.train(max_epochs=args.epochs, batch_size=args.batch_size, accelerator=args.accelerator, seed=0,
                precision=precision, check_val_every_n_epoch=1, enable_progress_bar=False, callbacks=[clock])
    per_epoch = statistics.median(clock.times[1:] or clock.times)
    return {"s_per_epoch": per_epoch, "cells_per_s": len(model.train_indices) / per_epoch,
            "elbo_validation": float(model.history["elbo_validation"].iloc[-1])}


def main(argv=None) -> int:
    args = _args(argv)
    import anndata
    import torch

    torch.set_num_threads(args.threads)
    from snakevi.model import SCVI

    precisions = args.precisions or (["32", "bf16-mixed"] + (["16-mixed"] if args.accelerator == "cuda" else []))
    adata = anndata.read_h5ad(simulated_h5ad(args.cells, args.genes, folder=args.data_dir))
    SCVI.setup_anndata(adata, batch_key="batch")
    results: dict[str, list[dict]] = {p: [] for p in precisions}
    for repeat in range(args.repeats):
        order = precisions[repeat % len(precisions):] + precisions[:repeat % len(precisions)]
        for precision in order:
            results[precision].append(_train_once(adata, precision, args))
            print(f"repeat {repeat} {precision}: {results[precision][-1]}", flush=True)
    base = results[precisions[0]]
    base_speed = statistics.median(r["cells_per_s"] for r in base)
    base_elbo = statistics.median(r["elbo_validation"] for r in base)
    device = torch.cuda.get_device_name() if args.accelerator == "cuda" else platform.processor() or platform.machine()
    lines = [f"# Precision, {datetime.date.today()}: {args.cells} cells x {args.genes} genes, batch {args.batch_size}, "
             f"{args.epochs} epochs, {args.repeats} repeats, {args.accelerator} ({device}), torch {torch.__version__}, "
             f"{args.threads} threads", "",
             "| precision | s/epoch | cells/s | speed vs 32 | final elbo_validation | vs 32 |", "|---|---|---|---|---|---|"]
    for precision in precisions:
        speed = statistics.median(r["cells_per_s"] for r in results[precision])
        per_epoch = statistics.median(r["s_per_epoch"] for r in results[precision])
        elbo = statistics.median(r["elbo_validation"] for r in results[precision])
        lines.append(f"| {precision} | {per_epoch:.3f} | {speed:,.0f} | {speed / base_speed:.2f}x | {elbo:.3f} | "
                     f"{(elbo - base_elbo) / abs(base_elbo):+.3%} |")
    table = "\n".join(lines) + "\n"
    print(table)
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = out / f"precision_{datetime.date.today()}_{args.accelerator}"
    stem.with_suffix(".md").write_text(table)
    stem.with_suffix(".json").write_text(json.dumps({"args": vars(args), "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
