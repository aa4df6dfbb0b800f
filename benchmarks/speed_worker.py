#!/usr/bin/env python
"""One measurement of the speed benchmark: train one system once and write a JSON line.

Run by ``speed.py`` in a fresh process per measurement (so import time and peak RSS are the
system's own), with the interpreter of the system's environment: the project's ``.venv`` for
``snakevi`` and ``bare``, ``.venv-scvi`` for ``scvi-tools``. Nothing is imported at the top
beyond the standard library, so the import timings below start from a bare interpreter.
"""

from __future__ import annotations

import time

_T_TOP = time.time()

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import os  # noqa: E402
import resource  # noqa: E402
import sys  # noqa: E402


def _args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--system", choices=tuple(RUNNERS), required=True)
    p.add_argument("--data", required=True, help=".h5ad with counts in X and obs['batch']")
    p.add_argument("--epochs", type=int, required=True)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--launched-at", type=float, default=None,
                   help="time.time() when the parent started this process (start-up includes interpreter start)")
    p.add_argument("--out", required=True, help="JSON file to write")
    return p.parse_args(argv)


class _Clock:
    """Wall-clock marks shared by the three systems' epoch hooks."""

    def __init__(self) -> None:
        self.first_epoch_start = None
        self.epoch_times: list[float] = []
        self._t = None

    def start(self) -> None:
        self._t = time.perf_counter()
        if self.first_epoch_start is None:
            self.first_epoch_start = time.time()

    def end(self) -> None:
        self.epoch_times.append(time.perf_counter() - self._t)


def _run_snakevi(args, clock: _Clock) -> tuple[float, float]:
    t0 = time.perf_counter()
    import anndata as ad

    from snakevi.model import SCVI
    import_s = time.perf_counter() - t0

    class EpochClock:
        def on_train_epoch_start(self, trainer, plan):  # noqa: ARG002
            clock.start()

        def on_train_epoch_end(self, trainer, plan):  # noqa: ARG002 - after validation here
            clock.end()

    adata = ad.read_h5ad(args.data)
    SCVI.setup_anndata(adata, batch_key="batch")
    model = SCVI(adata)
    model.train(max_epochs=args.epochs, batch_size=args.batch_size, train_size=0.9,
                check_val_every_n_epoch=1, seed=args.seed, enable_progress_bar=False,
                callbacks=[EpochClock()])
    return import_s, float(model.history["elbo_validation"].iloc[-1])


def _run_scvi_tools(args, clock: _Clock) -> tuple[float, float]:
    import tempfile

    t0 = time.perf_counter()
    import scvi
    import_s = time.perf_counter() - t0
    import anndata as ad
    import lightning.pytorch as pl
    import torch

    scvi.settings.logging_dir = tempfile.mkdtemp(prefix="scvi_bench_")
    scvi.settings.seed = args.seed
    torch.set_num_threads(args.threads)

    class EpochClock(pl.Callback):
        def on_train_epoch_start(self, trainer, pl_module):  # noqa: ARG002
            clock.start()

        def on_train_epoch_end(self, trainer, pl_module):  # noqa: ARG002 - Lightning 2 validates before this
            clock.end()

    adata = ad.read_h5ad(args.data)
    scvi.model.SCVI.setup_anndata(adata, batch_key="batch")
    model = scvi.model.SCVI(adata)
    model.train(max_epochs=args.epochs, batch_size=args.batch_size, train_size=0.9,
                check_val_every_n_epoch=1, enable_progress_bar=False, callbacks=[EpochClock()],
                accelerator="cpu")
    return import_s, float(model.history["elbo_validation"]["elbo_validation"].iloc[-1])


def _run_bare(args, clock: _Clock) -> tuple[float, float]:
    import anndata as ad
    import torch
    import numpy as np

    from bare_scvi import train_bare  # this script's folder is on sys.path when it runs

    adata = ad.read_h5ad(args.data)
    X = adata.X.toarray() if hasattr(adata.X, "toarray") else np.asarray(adata.X)
    codes = adata.obs["batch"].astype("category").cat.codes.to_numpy().astype(np.int64)
    n = adata.n_obs
    n_train = math.ceil(0.9 * n)
    perm = np.random.RandomState(args.seed).permutation(n)
    train_idx, val_idx = torch.from_numpy(perm[:n_train]), torch.from_numpy(perm[n_train:])
    X_t = torch.from_numpy(np.ascontiguousarray(X, dtype=np.float32))
    batch_t = torch.from_numpy(codes[:, None])
    del X, adata
    # The bare loop times its own epochs; replay them into the clock.
    clock.first_epoch_start = time.time()
    out = train_bare(X_t, batch_t, train_idx, val_idx, epochs=args.epochs,
                     batch_size=args.batch_size, seed=args.seed)
    clock.epoch_times = out["epoch_times"]
    return 0.0, out["elbo_validation"]  # the bare loop imports nothing beyond torch


def _run_bare_kept_memory(args, clock: _Clock) -> tuple[float, float]:
    """The bare loop after snakevi's host-memory setting, loaded from its file alone (no snakevi import)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "src" / "snakevi" / "train" / "host_memory.py"
    spec = importlib.util.spec_from_file_location("host_memory", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not module.keep_freed_host_memory():
        raise RuntimeError("bare-kept-memory: the host-memory setting could not be applied here (not glibc?)")
    return _run_bare(args, clock)


#: Each system's training function: ``(args, clock) -> (library import seconds, final elbo_validation)``.
RUNNERS = {"snakevi": _run_snakevi, "scvi-tools": _run_scvi_tools, "bare": _run_bare,
           "bare-kept-memory": _run_bare_kept_memory}


def main(argv=None) -> int:
    args = _args(argv)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(args.threads)
    clock = _Clock()
    t0 = time.perf_counter()
    import torch
    torch.set_num_threads(args.threads)
    torch_import_s = time.perf_counter() - t0
    import_s, elbo = RUNNERS[args.system](args, clock)
    launched = args.launched_at if args.launched_at is not None else _T_TOP
    result = {
        "system": args.system,
        "batch_size": args.batch_size,
        "epochs": args.epochs,
        "threads": torch.get_num_threads(),
        "epoch_times": clock.epoch_times,
        # torch's own import is shared by all three; "import_s" adds the library on top of it.
        "torch_import_s": torch_import_s,
        "import_s": torch_import_s + import_s,
        "startup_s": clock.first_epoch_start - launched,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "elbo_validation": elbo,
        "python": sys.version.split()[0],
        "torch": torch.__version__,
    }
    with open(args.out, "w") as fh:
        json.dump(result, fh)
    return 0


if __name__ == "__main__":
    sys.exit(main())
