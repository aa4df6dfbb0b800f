#!/usr/bin/env python
"""scib-metrics' own numbers on ../shared/data, the reference tests/metrics/test_scib_reference.py holds snakevi to.

Runs in the scib-metrics environment (``bash benchmarks/setup_scib_env.sh`` makes ``.venv-scib``:
scib-metrics 0.5.10, scanpy, jax) and imports nothing from snakevi. For each case it does what
a scib-metrics user does, with the library's defaults:

1. counts -> ``sc.pp.normalize_total(target_sum=1e4)`` -> ``sc.pp.log1p`` -> ``sc.tl.pca``
   (50 components, ARPACK, ``use_highly_variable=False``) on **all** cells: the unintegrated
   embedding ("PCA"), as ``Benchmarker.prepare`` computes it;
2. a second embedding, "PCA centred per batch" (the first 30 components with each batch's
   mean removed: a crude integration whose batch scores differ from the PCA's);
3. the cells to score: all, or those whose label is not the case's unlabelled category (the
   PCA stays the one of all cells);
4. ``Benchmarker(..., pre_integrated_embedding_obsm_key="X_pca").benchmark()`` with default
   metrics and pynndescent neighbours, ``get_results(min_max_scale=False)``. Without a batch
   key: a constant batch column and ``batch_correction_metrics=None`` (bio conservation only).

    .venv-scib/bin/python benchmarks/scib_reference.py            # rewrites the reference file
    .venv-scib/bin/python benchmarks/scib_reference.py --out x.json --cases cellbench

The output records the versions and, per case and embedding, every metric of the table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DATA = ROOT.parent / "shared" / "data"
REFERENCE = ROOT / "tests" / "metrics" / "data" / "scib_metrics_reference.json"
#: Case name -> dataset file, batch key (None: no batch), labels key, unlabelled category.
CASES = {
    "cellbench": ("cellbench_lung_celseq2_dropseq.h5ad", "batch", "cell_line", None),
    "kang_dendritic_unlabelled": ("kang_pbmc_ctrl_8donors.h5ad", "donor", "cell_type", "Dendritic cells"),
    "cellbench_no_batch": ("cellbench_lung_celseq2_dropseq.h5ad", None, "cell_line", None),
}
EMBEDDINGS = {"X_pca": "PCA", "X_centred": "PCA centred per batch"}
N_CENTRED = 30


def centred_per_batch(pca: np.ndarray, batch: np.ndarray) -> np.ndarray:
    """The first :data:`N_CENTRED` components with each batch's mean removed (float32)."""
    out = np.array(pca[:, :N_CENTRED], dtype=np.float64)
    for b in np.unique(batch):
        out[batch == b] -= out[batch == b].mean(axis=0)
    return out.astype(np.float32)


def run_case(name: str) -> dict:
    import anndata as ad
    import scanpy as sc
    from scib_metrics.benchmark import Benchmarker

    file, batch_key, labels_key, unlabeled = CASES[name]
    adata = ad.read_h5ad(DATA / file)
    sc.pp.normalize_total(adata, target_sum=1e4)
    sc.pp.log1p(adata)
    sc.tl.pca(adata, svd_solver="arpack", use_highly_variable=False)
    batch = np.asarray(adata.obs[batch_key].astype(str)) if batch_key else np.zeros(adata.n_obs, dtype=str)
    adata.obs["scored_batch"] = batch
    adata.obsm["X_centred"] = centred_per_batch(adata.obsm["X_pca"], batch)
    scored = adata
    if unlabeled is not None:
        scored = adata[np.asarray(adata.obs[labels_key].astype(str)) != unlabeled].copy()
    tic = time.perf_counter()
    bm = Benchmarker(scored, batch_key="scored_batch", label_key=labels_key, embedding_obsm_keys=list(EMBEDDINGS),
                     pre_integrated_embedding_obsm_key="X_pca", n_jobs=1, progress_bar=False,
                     **({} if batch_key else {"batch_correction_metrics": None}))
    bm.benchmark()
    seconds = time.perf_counter() - tic
    table = bm.get_results(min_max_scale=False).drop(index="Metric Type")
    metrics = {EMBEDDINGS[key]: {metric: float(value) for metric, value in table.loc[key].items()}
               for key in EMBEDDINGS}
    return {"dataset": file, "batch_key": batch_key, "labels_key": labels_key, "unlabeled_category": unlabeled,
            "n_cells_pca": int(adata.n_obs), "n_cells_scored": int(scored.n_obs), "seconds": round(seconds, 1),
            "metrics": metrics}


def main(argv=None) -> None:
    from importlib.metadata import version

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    p.add_argument("--out", default=str(REFERENCE))
    args = p.parse_args(argv)
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    result = {
        "made_by": "benchmarks/scib_reference.py",
        "versions": {**{name: version(name) for name in ("scib-metrics", "jax", "scanpy", "pynndescent")},
                     "python": platform.python_version()},
        "protocol": "log1p(CP10k) -> sc.tl.pca(arpack, 50) on all cells; Benchmarker defaults (pynndescent), "
                    "get_results(min_max_scale=False); no batch key: constant batch, batch_correction_metrics=None",
        "cases": {},
    }
    for name in args.cases:
        result["cases"][name] = run_case(name)
        print(name, json.dumps(result["cases"][name]["metrics"], indent=1))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
