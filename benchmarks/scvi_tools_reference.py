#!/usr/bin/env python
"""scvi-tools side of the snakevi <-> scvi-tools parity benchmark.

Run with the comparison environment's interpreter (see ``setup_scvi_env.sh``)::

    .venv-scvi/bin/python benchmarks/scvi_tools_reference.py \
        --data ../shared/data/kang_pbmc_ctrl_8donors.h5ad --batch-key donor \
        --epochs 50 --seed 0 --threads 2 --out benchmarks/out/scvi_kang_50ep_seed0.json

It trains a default ``scvi.model.SCVI`` (batch 128, validation every epoch) and writes a JSON
with the versions, the train/validation split (so the identical split can be reused), the full
per-epoch history of every logged metric, per-epoch wall times, and the import time of scvi.

``train_size``: by default nothing is passed (``train_size=None``, scvi-tools' own default). With
None, DataSplitter uses 0.9 and, if the last training minibatch would hold 1 or 2 cells, moves those
cells to the validation set; with an explicit 0.9 it only warns. ``--train-size 0.9`` selects the
explicit form. Which one was used, and whether the tail rule fired, is recorded in the JSON.

This script never imports snakevi and does not need the project's own environment.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import math
import os
import platform
import sys
import tempfile
import time


def _parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, help="path to an .h5ad with raw counts in X")
    p.add_argument("--batch-key", default=None, help="obs column with the batch (None: no batch)")
    p.add_argument("--epochs", type=int, required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument(
        "--train-size",
        default="none",
        help="'none' (scvi-tools default, tail rule active) or a float such as 0.9",
    )
    p.add_argument("--out", required=True, help="output JSON path")
    p.add_argument(
        "--module-repr",
        default=None,
        help="where to write print(model.module) (default: <out dir>/scvi_module_repr.txt)",
    )
    return p.parse_args(argv)


def _jsonable(v):
    """Turn numpy / torch scalars into plain Python numbers (NaN -> None)."""
    try:
        import numpy as np

        if isinstance(v, np.generic):
            v = v.item()
    except ImportError:  # pragma: no cover
        pass
    if hasattr(v, "item") and not isinstance(v, (int, float, str)):
        try:
            v = v.item()
        except Exception:
            pass
    if isinstance(v, float) and (math.isnan(v) or math.isinf(v)):
        return None
    return v


def main(argv=None) -> int:
    args = _parse_args(argv)

    # Threads: fix them before torch is imported, then again through torch.
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(args.threads)

    t0 = time.perf_counter()
    import torch

    t_import_torch = time.perf_counter() - t0
    torch.set_num_threads(args.threads)

    t0 = time.perf_counter()
    import scvi  # noqa: E402

    t_import_scvi = time.perf_counter() - t0

    import anndata as ad
    import lightning.pytorch as pl
    import numpy as np

    # Keep Lightning/scvi from writing logs into the current directory.
    scvi.settings.logging_dir = tempfile.mkdtemp(prefix="scvi_log_")
    torch.set_num_threads(args.threads)

    class EpochTimer(pl.Callback):
        """Wall time per epoch: training part, validation part and the whole epoch."""

        def __init__(self):
            self.epoch_total = []
            self.epoch_train = []
            self.epoch_val = []
            self._t_epoch = None
            self._t_val = None

        def on_train_epoch_start(self, trainer, pl_module):
            self._t_epoch = time.perf_counter()
            self._t_val = None

        def on_validation_epoch_start(self, trainer, pl_module):
            self._t_val = time.perf_counter()
            if self._t_epoch is not None:
                self.epoch_train.append(self._t_val - self._t_epoch)

        def on_validation_epoch_end(self, trainer, pl_module):
            if self._t_val is not None:
                self.epoch_val.append(time.perf_counter() - self._t_val)

        def on_train_epoch_end(self, trainer, pl_module):
            # In Lightning 2.x validation runs inside the training epoch, before this hook.
            self.epoch_total.append(time.perf_counter() - self._t_epoch)

    adata = ad.read_h5ad(args.data)

    scvi.settings.seed = args.seed
    scvi.model.SCVI.setup_anndata(adata, batch_key=args.batch_key)
    model = scvi.model.SCVI(adata)

    module_repr = repr(model.module)
    repr_path = args.module_repr or os.path.join(
        os.path.dirname(os.path.abspath(args.out)), "scvi_module_repr.txt"
    )
    os.makedirs(os.path.dirname(os.path.abspath(repr_path)), exist_ok=True)
    with open(repr_path, "w") as fh:
        fh.write(module_repr + "\n")

    train_size = None if str(args.train_size).lower() == "none" else float(args.train_size)

    timer = EpochTimer()
    t0 = time.perf_counter()
    model.train(
        max_epochs=args.epochs,
        batch_size=args.batch_size,
        train_size=train_size,
        check_val_every_n_epoch=1,
        enable_progress_bar=False,
        callbacks=[timer],
    )
    t_train = time.perf_counter() - t0

    train_idx = [int(i) for i in np.asarray(model.train_indices)]
    val_idx = [int(i) for i in np.asarray(model.validation_indices)]
    test_idx = [int(i) for i in np.asarray(model.test_indices)]

    # What DataSplitter would compute without the tail rule, for the record.
    n_obs = int(adata.n_obs)
    n_train_plain = math.ceil((0.9 if train_size is None else train_size) * n_obs)
    tail_rule_fired = (train_size is None) and (len(train_idx) != n_train_plain)

    history = {}
    for key, df in model.history.items():
        col = df[key] if key in df.columns else df.iloc[:, 0]
        history[key] = {
            "index_name": df.index.name,
            "index": [_jsonable(i) for i in df.index.tolist()],
            "values": [_jsonable(v) for v in col.tolist()],
        }

    def _last(key):
        h = history.get(key)
        return None if not h or not h["values"] else h["values"][-1]

    def _first_row():
        row = {}
        for key, h in history.items():
            if h["index"] and h["index"][0] == 0:
                row[key] = h["values"][0]
        return row

    n_epochs_done = len(history.get("elbo_validation", {}).get("values", [])) or args.epochs
    result = {
        "scvi_version": scvi.__version__,
        "torch_version": torch.__version__,
        "lightning_version": pl.__version__,
        "anndata_version": importlib.metadata.version("anndata"),
        "numpy_version": np.__version__,
        "python_version": platform.python_version(),
        "argv": sys.argv,
        "data": os.path.abspath(args.data),
        "batch_key": args.batch_key,
        "seed": args.seed,
        "threads": args.threads,
        "torch_num_threads": torch.get_num_threads(),
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "train_size_passed": train_size,
        "train_size_note": (
            "train_size=None (scvi-tools default): 0.9 plus the tail rule that moves a last "
            "training minibatch of 1-2 cells to validation"
            if train_size is None
            else "explicit train_size: no tail rule, only a warning"
        ),
        "tail_rule_fired": bool(tail_rule_fired),
        "n_obs": n_obs,
        "n_vars": int(adata.n_vars),
        "n_batch": int(model.summary_stats.n_batch),
        "n_train": len(train_idx),
        "n_val": len(val_idx),
        "n_test": len(test_idx),
        "train_indices": train_idx,
        "validation_indices": val_idx,
        "test_indices": test_idx,
        "history_keys": sorted(history),
        "history": history,
        "first_epoch_row": _first_row(),
        "import_time_torch_s": t_import_torch,
        "import_time_scvi_s": t_import_scvi,
        "train_time_total_s": t_train,
        "epoch_times_s": timer.epoch_total,
        "epoch_train_times_s": timer.epoch_train,
        "epoch_val_times_s": timer.epoch_val,
        "s_per_epoch_mean": (
            sum(timer.epoch_total) / len(timer.epoch_total)
            if timer.epoch_total
            else t_train / n_epochs_done
        ),
        "s_per_epoch_from_total": t_train / n_epochs_done,
        "final": {
            "epoch": n_epochs_done,
            "elbo_validation": _last("elbo_validation"),
            "reconstruction_loss_validation": _last("reconstruction_loss_validation"),
            "kl_local_validation": _last("kl_local_validation"),
            "validation_loss": _last("validation_loss"),
            "elbo_train": _last("elbo_train"),
            "train_loss": _last("train_loss"),
            "kl_weight": _last("kl_weight"),
        },
        "module_repr_path": os.path.abspath(repr_path),
        "module_repr": module_repr,
        "n_params": int(sum(p.numel() for p in model.module.parameters())),
    }

    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as fh:
        json.dump(result, fh, indent=1)

    print(
        json.dumps(
            {
                k: result[k]
                for k in (
                    "scvi_version",
                    "torch_version",
                    "n_obs",
                    "n_vars",
                    "n_train",
                    "n_val",
                    "tail_rule_fired",
                    "import_time_scvi_s",
                    "train_time_total_s",
                    "s_per_epoch_mean",
                    "final",
                )
            },
            indent=1,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
