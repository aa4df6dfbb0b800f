#!/usr/bin/env python
"""Integration quality, snakevi beside scvi-tools 1.4.2: scib-style metrics over seeds on real data.

Usage (from the repository root; makes .venv-scvi on first use)::

    envs/venv-run python benchmarks/parity.py                  # add --reuse to keep earlier runs

Per dataset in ``../shared/data`` (Kang: batch ``donor``, labels ``cell_type``; CellBench: batch
``batch``, labels ``cell_line``), ``--epochs`` epochs (default 50 on both: the 12 trainings then
fit in well under an hour on 2 cores; scvi-tools' heuristic would be 400), per seed (0, 1, 2)
and per system, a default SCVI is trained (``latent_worker.py``, same calls on
both sides, 2 threads) and its latent space scored with :func:`snakevi.metrics.integration_metrics`
(the same code for both systems), with a PCA of log-normalized counts as the PCR-comparison
reference and as the unintegrated baseline row. Prints mean ± sd per metric and writes
``benchmarks/out/parity_<datasets>.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from worker_runs import DATA, OUT, ensure_scvi_env, machine, mean_sd, run_worker

SYSTEMS = ("snakevi", "scvi-tools")
#: name -> (file, batch key, labels key)
DATASETS = {
    "kang": ("kang_pbmc_ctrl_8donors.h5ad", "donor", "cell_type"),
    "cellbench": ("cellbench_lung_celseq2_dropseq.h5ad", "batch", "cell_line"),
}


def score_dataset(name: str, args) -> dict:
    """{system: [metrics per seed]} plus the PCA baseline's metrics for one dataset."""
    import anndata

    from snakevi.metrics import integration_metrics, pca_baseline

    file, batch_key, labels_key = DATASETS[name]
    epochs = args.epochs
    path = DATA / file
    adata = anndata.read_h5ad(path)
    batch = adata.obs[batch_key].astype(str).to_numpy()
    labels = adata.obs[labels_key].astype(str).to_numpy()
    pca = pca_baseline(adata.X, n_comps=50, seed=0)
    scores = {"PCA baseline": [integration_metrics(pca, batch, labels, pre_integrated=pca, seed=0)]}
    common = ["--mode", "scvi", "--data", str(path), "--batch-key", batch_key, "--labels-key", labels_key,
              "--epochs", str(epochs)]
    for seed in args.seeds:
        for system in args.systems:
            out = OUT / f"{name}_scvi_e{epochs}_{system}_s{seed}.npz"
            r = run_worker(system, out, [*common, "--seed", str(seed)], threads=args.threads, reuse=args.reuse)
            m = integration_metrics(np.asarray(r["latent"], dtype=np.float32), batch, labels, pre_integrated=pca,
                                    seed=0)
            scores.setdefault(system, []).append(m)
            print(f"{name} {system} seed {seed}: Total {m['Total']:.4f} ({float(r['seconds']):.0f} s training)")
    return scores


def table(name: str, scores: dict) -> str:
    metrics = list(scores["PCA baseline"][0])
    systems = [s for s in scores if s != "PCA baseline"]
    head = "| metric | " + " | ".join(f"{s} (mean ± sd, {len(scores[s])} seeds)" for s in systems) + " | PCA baseline |"
    lines = [f"**{name}**", "", head, "|---|" + "---:|" * (len(systems) + 1)]
    for metric in metrics:
        cells = [mean_sd([m[metric] for m in scores[s]]) for s in systems]
        lines.append(f"| {metric} | " + " | ".join(cells) + f" | {scores['PCA baseline'][0][metric]:.3f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--epochs", type=int, default=50, help="SCVI epochs on every dataset")
    p.add_argument("--systems", nargs="+", default=list(SYSTEMS), choices=SYSTEMS)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--reuse", action="store_true", help="reuse worker outputs already in benchmarks/out/integration")
    args = p.parse_args(argv)
    if "scvi-tools" in args.systems:
        ensure_scvi_env()
    results = {name: score_dataset(name, args) for name in args.datasets}
    text = "\n\n".join(table(name, scores) for name, scores in results.items())
    text += f"\n\nMachine: {machine()}; scvi-tools 1.4.2 in .venv-scvi; metrics: snakevi.metrics (no min-max scaling).\n"
    print("\n" + text)
    tag = "_".join(args.datasets)
    (OUT.parent / f"parity_{tag}.md").write_text(text)
    (OUT.parent / f"parity_{tag}.json").write_text(json.dumps(results, indent=1, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
