#!/usr/bin/env python
"""scANVI label prediction and reference mapping on Kang: snakevi beside scvi-tools 1.4.2.

Usage (from the repository root; makes .venv-scvi on first use)::

    envs/venv-run python benchmarks/scanvi_accuracy.py            # add --reuse to keep earlier runs

The labels (``cell_type``) of two donors (by default the last two in sorted order, 1256 and
1488: 4,138 of 12,261 cells) are hidden as "Unknown". Per system and seed:

1. **scANVI**: SCVI (``--epochs``, default 100) then ``SCANVI.from_scvi_model`` (scvi-tools'
   default epochs for a pretrained model) on all eight donors; accuracy of the predicted labels
   on the hidden donors' cells.
2. **Reference mapping**: the same two steps on the other six donors only, then the two donors
   as a query (``prepare_query_anndata`` + ``load_query_data``, 100 epochs, weight decay 0);
   accuracy of the query's predicted labels.

Both systems run the same calls with default settings (``latent_worker.py``) on 2 threads.
Prints the accuracies and writes them to ``benchmarks/out/scanvi_accuracy.json``.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from worker_runs import DATA, OUT, ensure_scvi_env, machine, mean_sd, run_worker

SYSTEMS = ("snakevi", "scvi-tools")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=str(DATA / "kang_pbmc_ctrl_8donors.h5ad"))
    p.add_argument("--batch-key", default="donor")
    p.add_argument("--labels-key", default="cell_type")
    p.add_argument("--hide", nargs="+", default=None, help="donors to hide (default: the last two in sorted order)")
    p.add_argument("--epochs", type=int, default=100, help="SCVI epochs before scANVI")
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--systems", nargs="+", default=list(SYSTEMS), choices=SYSTEMS)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--reuse", action="store_true", help="reuse worker outputs already in benchmarks/out/integration")
    args = p.parse_args(argv)
    import anndata

    adata = anndata.read_h5ad(args.data, backed="r")
    batches = adata.obs[args.batch_key].astype(str).to_numpy()
    truth = adata.obs[args.labels_key].astype(str).to_numpy()
    hide = args.hide or sorted(set(batches))[-2:]
    hidden = np.isin(batches, hide)
    print(f"hidden {args.batch_key}s {hide}: {hidden.sum()} of {len(hidden)} cells; {machine()}")
    if "scvi-tools" in args.systems:
        ensure_scvi_env()
    common = ["--data", args.data, "--batch-key", args.batch_key, "--labels-key", args.labels_key,
              "--epochs", str(args.epochs), "--hide", *hide]
    results = {}
    for seed in args.seeds:
        for system in args.systems:
            for mode in ("scanvi", "arches"):
                out = OUT / f"kang_{mode}_{system}_s{seed}.npz"
                r = run_worker(system, out, [*common, "--mode", mode, "--seed", str(seed)], threads=args.threads,
                               reuse=args.reuse)
                cells = r["cells"] if mode == "arches" else np.flatnonzero(hidden)
                predicted = r["predicted"] if mode == "arches" else r["predicted"][hidden]
                acc = float(np.mean(predicted == truth[cells]))
                results.setdefault(system, {}).setdefault(mode, []).append(
                    {"seed": seed, "accuracy": acc, "seconds": float(r["seconds"]), "version": str(r["version"])})
                print(f"{system:10s} {mode:7s} seed {seed}: accuracy on the hidden donors {acc:.4f} "
                      f"({float(r['seconds']):.0f} s)")
    print("\n| system | scANVI on all 8 donors | reference (6) + query (2) | difference (points) |")
    print("|---|---:|---:|---:|")
    for system, modes in results.items():
        full = [x["accuracy"] for x in modes["scanvi"]]
        mapped = [x["accuracy"] for x in modes["arches"]]
        diff = 100 * (np.mean(mapped) - np.mean(full))
        print(f"| {system} {modes['scanvi'][0]['version']} | {mean_sd(full)} | {mean_sd(mapped)} | {diff:+.1f} |")
    (OUT.parent / "scanvi_accuracy.json").write_text(json.dumps(
        {"hidden": hide, "n_hidden": int(hidden.sum()), "epochs": args.epochs, "machine": machine(),
         "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
