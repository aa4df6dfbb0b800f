#!/usr/bin/env python
"""Cross-check snakevi.metrics against scib-metrics on the real datasets.

For each dataset: a PCA (30 components) of log-normalised counts is the "unintegrated"
embedding, the same PCA with every batch's mean removed is a crude "integration", and a
50-component PCA is the pre-integrated embedding for PCR comparison. Both implementations
score both embeddings from the *same* arrays:

- snakevi: ``snakevi.metrics.integration_metrics`` (plus the classic silhouette batch);
- scib-metrics: its ``Benchmarker`` (pynndescent neighbours, as a user runs it), run in its own
  environment (``benchmarks/setup_scib_env.sh`` makes ``.venv-scib``), and a second time with
  snakevi's exact neighbours handed to ``Benchmarker.prepare(neighbor_computer=...)``, which
  separates the kNN approximation from everything else.

    envs/venv-run python benchmarks/scib_crosscheck.py            # both datasets
    envs/venv-run python benchmarks/scib_crosscheck.py --datasets cellbench

Prints one table per dataset and embedding and writes benchmarks/out/scib_crosscheck.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DATA = ROOT.parent / "shared" / "data"
SCIB_PYTHON = ROOT / ".venv-scib" / "bin" / "python"
DATASETS = {
    "kang": ("kang_pbmc_ctrl_8donors.h5ad", "donor", "cell_type"),
    "cellbench": ("cellbench_lung_celseq2_dropseq.h5ad", "batch", "cell_line"),
}
EMBEDDINGS = ("PCA", "PCA centred per batch")
ROWS = ("Isolated labels", "KMeans NMI", "KMeans ARI", "Silhouette label", "cLISI", "BRAS", "Silhouette batch",
        "iLISI", "KBET", "Graph connectivity", "PCR comparison", "Batch correction", "Bio conservation", "Total")


# --- the scib-metrics side: runs in .venv-scib, imports nothing from snakevi ----------------------

def scib_worker(npz_path: str, out_path: str) -> None:
    import warnings

    import anndata as ad
    import pandas as pd
    import scib_metrics
    from scib_metrics.benchmark import Benchmarker
    from scib_metrics.nearest_neighbors import NeighborsResults

    warnings.filterwarnings("ignore")
    z = np.load(npz_path, allow_pickle=False)
    obs = pd.DataFrame({"batch": z["batch"].astype(str), "labels": z["labels"].astype(str)})
    obs.index = obs.index.astype(str)
    adata = ad.AnnData(np.zeros((len(obs), 1), dtype=np.float32), obs=obs)
    keys = []
    for i, _ in enumerate(EMBEDDINGS):
        adata.obsm[f"emb{i}"] = z[f"emb{i}"].astype(np.float32)
        keys.append(f"emb{i}")
    adata.obsm["X_pre"] = z["pre"].astype(np.float32)
    result = {"version": scib_metrics.__version__}
    for mode in ("pynndescent", "exact_knn"):
        bm = Benchmarker(adata, batch_key="batch", label_key="labels", embedding_obsm_keys=keys,
                         pre_integrated_embedding_obsm_key="X_pre", n_jobs=1, progress_bar=False)
        tic = time.perf_counter()
        if mode == "exact_knn":
            # Hand scib-metrics the exact neighbours snakevi computed (same rows, k = 90).
            lookup = {k: NeighborsResults(indices=z[f"knn_idx{i}"], distances=z[f"knn_dist{i}"])
                      for i, k in enumerate(keys)}
            arrays = {k: adata.obsm[k] for k in keys}

            def computer(X, k, lookup=lookup, arrays=arrays):
                name = next(n for n, a in arrays.items() if a.shape == X.shape and np.array_equal(a, X))
                return lookup[name].subset_neighbors(k)

            bm.prepare(neighbor_computer=computer)
        bm.benchmark()
        seconds = time.perf_counter() - tic
        df = bm.get_results(min_max_scale=False)
        df = df.drop(index="Metric Type")
        res = {}
        for i, k in enumerate(keys):
            col = {name: float(v) for name, v in df.loc[k].items()}
            if mode == "pynndescent":
                col["Silhouette batch"] = float(scib_metrics.silhouette_batch(
                    adata.obsm[k], adata.obs["labels"].values, adata.obs["batch"].values))
            res[EMBEDDINGS[i]] = col
        result[mode] = {"metrics": res, "seconds": seconds}
    Path(out_path).write_text(json.dumps(result, indent=1))


# --- the snakevi side ------------------------------------------------------------------------

def _embeddings(path: Path, batch_key: str, label_key: str):
    import anndata as ad

    from snakevi.metrics import pca_baseline

    adata = ad.read_h5ad(path)
    batch = np.asarray(adata.obs[batch_key].astype(str), dtype=str)
    labels = np.asarray(adata.obs[label_key].astype(str), dtype=str)
    # Rounded to float32, the precision scib-metrics (jax) works in, so both score the same numbers.
    pre = pca_baseline(adata.X, n_comps=50, seed=0).astype(np.float32).astype(np.float64)
    pca = pre[:, :30].copy()
    centred = pca.copy()
    for b in np.unique(batch):
        centred[batch == b] -= centred[batch == b].mean(axis=0)
    centred = centred.astype(np.float32).astype(np.float64)
    return pre, (pca, centred), batch, labels


def run_dataset(name: str, kmeans_seeds: int) -> dict:
    from snakevi.metrics import exact_knn, integration_metrics, nmi_ari_cluster_labels_kmeans, silhouette_batch

    file, batch_key, label_key = DATASETS[name]
    pre, embs, batch, labels = _embeddings(DATA / file, batch_key, label_key)
    ours, seconds, spread = {}, {}, {}
    arrays = {"pre": pre, "batch": batch, "labels": labels}
    for i, (emb_name, emb) in enumerate(zip(EMBEDDINGS, embs)):
        tic = time.perf_counter()
        m = integration_metrics(emb, batch, labels, pre_integrated=pre, seed=0)
        seconds[emb_name] = time.perf_counter() - tic
        m["Silhouette batch"] = silhouette_batch(emb, labels, batch)
        ours[emb_name] = m
        nmis, aris = [], []
        for s in range(kmeans_seeds):  # single initialisation, as scib-metrics: its spread over seeds
            r = nmi_ari_cluster_labels_kmeans(emb, labels, seed=s)
            nmis.append(r["nmi"])
            aris.append(r["ari"])
        spread[emb_name] = {"KMeans NMI": [min(nmis), max(nmis)], "KMeans ARI": [min(aris), max(aris)]}
        nb = exact_knn(emb, 90)
        arrays[f"emb{i}"] = emb
        arrays[f"knn_idx{i}"] = nb.indices
        arrays[f"knn_dist{i}"] = nb.distances.astype(np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        npz, out = Path(tmp) / "in.npz", Path(tmp) / "out.json"
        np.savez(npz, **arrays)
        env = dict(os.environ, JAX_PLATFORMS="cpu",
                   XLA_FLAGS="--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")
        subprocess.run([str(SCIB_PYTHON), __file__, "--scib-worker", str(npz), str(out)], check=True, env=env)
        theirs = json.loads(out.read_text())
    return {"ours": ours, "seconds": seconds, "kmeans_seed_range": spread, "kmeans_seeds": kmeans_seeds, "scib": theirs,
            "n_cells": int(len(batch))}


def print_table(name: str, res: dict) -> None:
    scib = res["scib"]
    print(f"\n## {name} ({res['n_cells']} cells), scib-metrics {scib['version']}")
    for emb in EMBEDDINGS:
        print(f"\n### {emb}: snakevi {res['seconds'][emb]:.1f} s; scib-metrics (both embeddings) "
              f"{scib['pynndescent']['seconds']:.1f} s (pynndescent), {scib['exact_knn']['seconds']:.1f} s (exact kNN)")
        print(f"| metric | snakevi | scib-metrics | diff | scib-metrics, exact kNN | diff |")
        print("|---|---:|---:|---:|---:|---:|")
        for row in ROWS:
            a = res["ours"][emb].get(row, float("nan"))
            b = scib["pynndescent"]["metrics"][emb].get(row, float("nan"))
            c = scib["exact_knn"]["metrics"][emb].get(row, float("nan"))
            exact = f"{c:.4f} | {a - c:+.4f}" if np.isfinite(c) else "n/a (no kNN) | "
            print(f"| {row} | {a:.4f} | {b:.4f} | {a - b:+.4f} | {exact} |")
        rng = res["kmeans_seed_range"][emb]
        print(f"snakevi KMeans with one initialisation (as scib-metrics), range over "
              f"{res['kmeans_seeds']} seeds: NMI {rng['KMeans NMI'][0]:.4f}..{rng['KMeans NMI'][1]:.4f}; "
              f"ARI: {rng['KMeans ARI'][0]:.4f}..{rng['KMeans ARI'][1]:.4f}")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    p.add_argument("--kmeans-seeds", type=int, default=10,
                   help="seeds of the single-initialisation KMeans NMI/ARI range printed under each table")
    p.add_argument("--out", default=str(HERE / "out" / "scib_crosscheck.json"))
    args = p.parse_args(argv)
    if not SCIB_PYTHON.exists():
        sys.exit(f"{SCIB_PYTHON} is missing: run benchmarks/setup_scib_env.sh first.")
    results = {}
    for name in args.datasets:
        results[name] = run_dataset(name, args.kmeans_seeds)
        print_table(name, results[name])
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=1))
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--scib-worker":
        scib_worker(sys.argv[2], sys.argv[3])
    else:
        main()
