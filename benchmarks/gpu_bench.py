#!/usr/bin/env python
"""GPU training speed: snakevi (device-resident vs host loader) and scvi-tools, in cells per second.

Usually run through ``benchmarks/gpu.sh``, which installs what the GPU machine lacks and calls::

    python benchmarks/gpu_bench.py run --systems snakevi-device snakevi-host --results R.jsonl
    python benchmarks/gpu_bench.py run --systems scvi-tools --results R.jsonl
    python benchmarks/gpu_bench.py report --results R.jsonl

Every system trains scVI's default network (n_hidden 128, n_latent 10, ZINB, gene dispersion,
batch one-hot) on the same simulated counts (``snakevi.data.simulate``, 2 batches, 5 groups,
``library_log_mean=5.25``: about 7.6% non-zero), with ``train_size=0.9`` and validation every
epoch, at each batch size. Speed is training cells per second: training cells / epoch wall
time, where an epoch is its training pass plus its validation pass (both systems' end-of-epoch
hook comes after validation); the median over every epoch but the first (warm-up). Each
``run`` also checks, for snakevi's device loader on CUDA, that iterating it never makes the
host wait on the GPU (``torch.cuda.set_sync_debug_mode("error")``), and times the loaders alone.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
import traceback
import warnings
from pathlib import Path

from bench_data import SIM_KWARGS  # this script's folder is on sys.path when it runs

SYSTEMS = ("snakevi-device", "snakevi-host", "scvi-tools")


def _args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="train and append one JSON line per (system, batch size) to --results")
    run.add_argument("--systems", nargs="+", choices=SYSTEMS, default=list(SYSTEMS))
    run.add_argument("--cells", type=int, default=50_000)
    run.add_argument("--genes", type=int, default=2_000)
    run.add_argument("--batch-sizes", type=int, nargs="+", default=[128, 1024])
    run.add_argument("--epochs", type=int, default=5, help="epochs per run; the first is not timed")
    run.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--data", type=Path, required=True, help="simulated counts (.npz), written on first use")
    run.add_argument("--results", type=Path, required=True)
    rep = sub.add_parser("report", help="print the table of --results")
    rep.add_argument("--results", type=Path, required=True)
    return p.parse_args(argv)


# ---- shared --------------------------------------------------------------------------------
def _load_data(path: Path, n_cells: int, n_genes: int, seed: int):
    """The simulated AnnData, simulated once and cached as .npz so every process trains on the same counts.

    A plain .npz (CSR pieces and the obs columns as strings) rather than .h5ad keeps the
    cache independent of anndata's writer and of the pandas version the GPU image has.
    """
    import anndata
    import numpy as np
    import pandas as pd
    import scipy.sparse as sp

    if not path.exists():
        from snakevi.data import simulate

        start = time.perf_counter()
        adata = simulate(n_cells, n_genes, seed=seed, **SIM_KWARGS)
        print(f"simulated {n_cells} x {n_genes} in {time.perf_counter() - start:.1f} s", flush=True)
        X = sp.csr_matrix(adata.X)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{os.getpid()}.{path.name}")
        with open(tmp, "wb") as fh:
            np.savez(fh, data=X.data, indices=X.indices, indptr=X.indptr, shape=np.array(X.shape),
                     batch=adata.obs["batch"].astype(str).to_numpy(dtype=str),
                     label=adata.obs["label"].astype(str).to_numpy(dtype=str))
        os.replace(tmp, path)  # a second process never reads a half-written file
    with np.load(path, allow_pickle=False) as z:
        X = sp.csr_matrix((z["data"], z["indices"], z["indptr"]), shape=tuple(z["shape"]))
        obs = pd.DataFrame({"batch": pd.Categorical(z["batch"]), "label": pd.Categorical(z["label"])},
                           index=[f"cell{i}" for i in range(X.shape[0])])
    return anndata.AnnData(X=X, obs=obs, var=pd.DataFrame(index=[f"gene{j}" for j in range(X.shape[1])]))


class _EpochClock:
    """Epoch wall times, the device synchronised at both ends so queued work is counted."""

    def __init__(self, cuda: bool) -> None:
        self.cuda, self.times, self._start = cuda, [], None

    def _now(self) -> float:
        if self.cuda:
            import torch

            torch.cuda.synchronize()
        return time.perf_counter()

    def start(self) -> None:
        self._start = self._now()

    def stop(self) -> None:
        self.times.append(self._now() - self._start)


def _row(system: str, batch_size: int, n_train: int, times: list[float], **extra) -> dict:
    timed = times[1:] or times
    per_epoch = statistics.median(timed)
    return {"system": system, "batch_size": batch_size, "n_train": n_train, "epoch_s": times,
            "median_epoch_s": per_epoch, "cells_per_s": n_train / per_epoch, **extra}


def _environment(device: str) -> dict:
    from importlib.metadata import version

    import torch

    env = {"python": platform.python_version(), "torch": torch.__version__, "device": device,
           "threads": torch.get_num_threads(),
           **{name: version(name) for name in ("numpy", "scipy", "pandas", "anndata")}}
    if device == "cuda":
        env["gpu"] = torch.cuda.get_device_name(0)
        env["cuda"] = torch.version.cuda
    return env


# ---- snakevi -------------------------------------------------------------------------------
def _snakevi(system: str, adata, batch_size: int, args) -> dict:
    """One training run; ``adata`` registered with ``SCVI.setup_anndata(adata, batch_key="batch")``."""
    from snakevi.model import SCVI

    clock = _EpochClock(args.device == "cuda")

    class Clock:  # snakevi callbacks are plain objects with hook methods
        def on_train_epoch_start(self, trainer, plan):
            clock.start()

        def on_train_epoch_end(self, trainer, plan):
            clock.stop()

    class SyncCount:
        """Host-device synchronisations during epoch 2 (training steps and validation), on CUDA."""

        def __init__(self) -> None:
            self.steps, self.syncs, self._catcher, self._record = 0, None, None, None

        def on_train_epoch_start(self, trainer, plan):
            if args.device == "cuda" and trainer.current_epoch == 1:
                import torch

                self._catcher = warnings.catch_warnings(record=True)
                self._record = self._catcher.__enter__()
                warnings.simplefilter("always")
                torch.cuda.set_sync_debug_mode("warn")

        def on_train_batch_end(self, trainer, plan, loss, batch_idx):
            if self._catcher is not None:
                self.steps += 1

        def on_train_epoch_end(self, trainer, plan):
            if self._catcher is not None:
                import torch

                torch.cuda.set_sync_debug_mode("default")
                self._catcher.__exit__(None, None, None)
                self.syncs = sum("synchroniz" in str(w.message) for w in self._record)
                self._catcher = None

    syncs = SyncCount()
    model = SCVI(adata, seed=args.seed)
    model.train(max_epochs=args.epochs, batch_size=batch_size, train_size=0.9, check_val_every_n_epoch=1,
                accelerator=args.device, data_on_device=system == "snakevi-device", enable_progress_bar=False,
                callbacks=[Clock(), syncs], seed=args.seed)
    elbo = float(model.history["elbo_validation"].iloc[-1])
    if syncs.syncs is not None:
        print(f"{system} batch {batch_size}: {syncs.syncs} host sync(s) in epoch 2 "
              f"({syncs.steps} training steps + validation)", flush=True)
    return _row(system, batch_size, len(model.train_indices), clock.times, elbo_validation=elbo,
                epoch2_host_syncs=syncs.syncs, epoch2_steps=syncs.steps)


def _loader_checks(adata, args) -> list[dict]:
    """Loader-only throughput (device vs host), and the no-host-sync check of the device loader."""
    import numpy as np
    import torch

    from snakevi.data import AnnDataLoader, CellData
    from snakevi.data.device_loader import DeviceAnnDataLoader, DeviceCellData

    data = CellData.from_anndata(adata)
    device = torch.device(args.device)
    idx = np.random.default_rng(0).permutation(len(data))[: int(0.9 * len(data))]
    shared = DeviceCellData(data, device)
    rows = []
    for batch_size in args.batch_sizes:
        loaders = {
            "loader-device": DeviceAnnDataLoader(shared, idx, batch_size=batch_size, shuffle=True, seed=0),
            "loader-host": AnnDataLoader(data, idx, batch_size=batch_size, shuffle=True, seed=0, device=device),
        }
        for name, loader in loaders.items():
            clock = _EpochClock(device.type == "cuda")
            for epoch in range(3):
                loader.set_epoch(epoch)
                clock.start()
                total = torch.zeros((), device=device)
                for batch in loader:
                    total += batch["X"][0, 0]  # touch each minibatch without reading it back
                clock.stop()
            rows.append(_row(name, batch_size, idx.size, clock.times))
            print(_line(rows[-1]), flush=True)
    if device.type == "cuda":
        loader = DeviceAnnDataLoader(shared, idx, batch_size=args.batch_sizes[0], shuffle=True, seed=0)
        loader.set_epoch(1)
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error")
        try:
            for _ in loader:
                pass
            verdict = "passed: no host-device synchronisation while iterating the device loader"
        except RuntimeError as err:
            frames = [f for f in traceback.extract_tb(err.__traceback__) if "device_loader" in f.filename]
            at = f" at device_loader.py:{frames[-1].lineno} `{frames[-1].line}`" if frames else ""
            verdict = f"FAILED{at}: {str(err).splitlines()[0]}"
        finally:
            torch.cuda.set_sync_debug_mode("default")
        print(f"sync check {verdict}", flush=True)
        rows.append({"system": "sync-check", "verdict": verdict})
    return rows


# ---- scvi-tools ----------------------------------------------------------------------------
def _import_scvi():
    """``(scvi, Callback)``, or ``(None, reason)`` when scvi-tools cannot be imported here."""
    try:
        import scvi
        from lightning.pytorch import Callback
    except Exception as err:  # noqa: BLE001 - any import failure means "not installable here"
        return None, f"scvi-tools not importable: {type(err).__name__}: {err}".splitlines()[0]
    return scvi, Callback


def _scvi_tools(scvi, callback_cls, adata, batch_size: int, args) -> dict:
    """One training run; ``adata`` registered with ``scvi.model.SCVI.setup_anndata(adata, batch_key="batch")``."""
    clock = _EpochClock(args.device == "cuda")

    class Clock(callback_cls):
        def on_train_epoch_start(self, trainer, pl_module):
            clock.start()

        def on_train_epoch_end(self, trainer, pl_module):
            clock.stop()

    scvi.settings.seed = args.seed
    model = scvi.model.SCVI(adata)
    model.train(max_epochs=args.epochs, batch_size=batch_size, train_size=0.9, check_val_every_n_epoch=1,
                accelerator="gpu" if args.device == "cuda" else "cpu", devices=1, enable_progress_bar=False,
                callbacks=[Clock()])
    elbo = float(model.history["elbo_validation"].iloc[-1, 0])
    return _row("scvi-tools", batch_size, len(model.train_indices), clock.times, elbo_validation=elbo,
                version=scvi.__version__)


def _free_device_memory(device: str) -> None:
    import gc

    import torch

    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()


# ---- report --------------------------------------------------------------------------------
def _line(row: dict) -> str:
    epochs = ", ".join(f"{t:.2f}" for t in row["epoch_s"])
    return (f"{row['system']:<15} batch {row['batch_size']:>5}: {row['cells_per_s']:>10,.0f} cells/s "
            f"(median {row['median_epoch_s']:.3f} s/epoch; epochs {epochs})")


def _report(path: Path) -> None:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    envs = [r for r in rows if r.get("system") == "environment"]
    for env in envs:
        print("environment:", ", ".join(f"{k} {v}" for k, v in env.items() if k != "system"))
    speed = {(r["system"], r["batch_size"]): r for r in rows if "cells_per_s" in r}
    sizes = sorted({bs for _, bs in speed})
    print()
    print("training cells/s (median over epochs after the first; epoch = training + validation pass)")
    print(f"{'system':<16}" + "".join(f"{'batch ' + str(bs):>16}" for bs in sizes) + "   elbo_validation (last)")
    for system in ("snakevi-device", "snakevi-host", "scvi-tools", "loader-device", "loader-host"):
        if not any((system, bs) in speed for bs in sizes):
            continue
        cells = "".join(f"{speed[(system, bs)]['cells_per_s']:>16,.0f}" if (system, bs) in speed else f"{'-':>16}"
                        for bs in sizes)
        elbo = " / ".join(f"{speed[(system, bs)]['elbo_validation']:.1f}" for bs in sizes
                          if (system, bs) in speed and "elbo_validation" in speed[(system, bs)])
        print(f"{system:<16}{cells}   {elbo}")
    for a, b in (("snakevi-device", "snakevi-host"), ("snakevi-device", "scvi-tools")):
        ratios = [f"batch {bs}: {speed[(a, bs)]['cells_per_s'] / speed[(b, bs)]['cells_per_s']:.2f}x"
                  for bs in sizes if (a, bs) in speed and (b, bs) in speed]
        if ratios:
            print(f"{a} / {b}: " + ", ".join(ratios))
    for r in rows:
        if "skipped" in r:
            where = f" batch {r['batch_size']}" if "batch_size" in r else ""
            print(f"{r['system']}{where}: skipped ({r['skipped']})")
        if r.get("system") == "sync-check":
            print(f"device loader sync check: {r['verdict']}")


def main(argv=None) -> int:
    args = _args(argv)
    if args.command == "report":
        _report(args.results)
        return 0
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        print(f"--device cuda but torch {torch.__version__} sees no GPU; use --device cpu (GPU_BENCH_SMOKE=1).")
        return 2
    adata = _load_data(args.data, args.cells, args.genes, args.seed)
    density = adata.X.nnz / (adata.n_obs * adata.n_vars)
    rows = [{"system": "environment", **_environment(args.device), "data": f"{adata.n_obs} x {adata.n_vars}",
             "non_zero": f"{density:.1%}", "epochs": args.epochs}]
    runners = {}
    if "scvi-tools" in args.systems:
        scvi, callback_cls = _import_scvi()
        if scvi is None:
            print(f"skipped {callback_cls}", flush=True)
            rows.append({"system": "scvi-tools", "skipped": callback_cls})
        else:
            rows[0]["scvi-tools"] = scvi.__version__
            scvi_adata = adata.copy()
            scvi.model.SCVI.setup_anndata(scvi_adata, batch_key="batch")
            runners["scvi-tools"] = lambda bs: _scvi_tools(scvi, callback_cls, scvi_adata, bs, args)
    if any(s.startswith("snakevi") for s in args.systems):
        from snakevi.model import SCVI

        ours = adata.copy()
        SCVI.setup_anndata(ours, batch_key="batch")
        for system in (s for s in args.systems if s.startswith("snakevi")):
            runners[system] = lambda bs, system=system: _snakevi(system, ours, bs, args)
    # Batch size outermost, systems alternating: drift in the machine's speed hits all alike.
    for batch_size in args.batch_sizes:
        for system, run in runners.items():
            try:
                rows.append(run(batch_size))
                print(_line(rows[-1]), flush=True)
            except Exception as err:  # noqa: BLE001 - report and go on with the other runs
                traceback.print_exc()
                rows.append({"system": system, "batch_size": batch_size,
                             "skipped": f"failed: {type(err).__name__}: {err}".splitlines()[0]})
            _free_device_memory(args.device)
    if "snakevi-device" in args.systems:
        rows += _loader_checks(ours, args)
    with open(args.results, "a") as fh:
        fh.writelines(json.dumps(row) + "\n" for row in rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
