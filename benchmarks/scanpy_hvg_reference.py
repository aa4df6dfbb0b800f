#!/usr/bin/env python
"""scanpy's own highly variable genes on ../shared/data: the reference of tests/data/test_hvg_scanpy.py.

Runs in the environment ``benchmarks/setup_scib_env.sh`` makes (``.venv-scib``: scanpy 1.11 and
scikit-misc) and imports nothing from snakevi. For each dataset, flavour and batch setting it
calls ``sc.pp.highly_variable_genes`` as a user does: ``seurat_v3`` and ``seurat_v3_paper`` on
the raw counts; ``seurat`` and ``cell_ranger`` after ``sc.pp.normalize_total(target_sum=1e4)``
and ``sc.pp.log1p``. It records the positions (in the dataset's gene order) of the genes chosen.

    .venv-scib/bin/python benchmarks/scanpy_hvg_reference.py   # rewrites the reference file
"""

from __future__ import annotations

import argparse
import json
import platform
from importlib.metadata import version
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DATA = ROOT.parent / "shared" / "data"
REFERENCE = ROOT / "tests" / "data" / "reference" / "scanpy_hvg_reference.json"
#: Dataset file -> (batch key, n_top_genes).
DATASETS = {
    "kang_pbmc_ctrl_8donors.h5ad": ("donor", 500),
    "cellbench_lung_celseq2_dropseq.h5ad": ("batch", 2000),
}
FLAVORS = ("seurat_v3", "seurat_v3_paper", "cell_ranger", "seurat")


def selected_positions(file: str, flavor: str, batch_key: str | None, n_top_genes: int) -> list[int]:
    import anndata as ad
    import scanpy as sc

    adata = ad.read_h5ad(DATA / file)
    if not flavor.startswith("seurat_v3"):
        sc.pp.normalize_total(adata, target_sum=1e4)
        sc.pp.log1p(adata)
    sc.pp.highly_variable_genes(adata, flavor=flavor, n_top_genes=n_top_genes, batch_key=batch_key)
    return np.flatnonzero(adata.var["highly_variable"].to_numpy()).tolist()


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=str(REFERENCE))
    args = p.parse_args(argv)
    result = {"made_by": "benchmarks/scanpy_hvg_reference.py",
              "versions": {**{n: version(n) for n in ("scanpy", "scikit-misc", "anndata", "pandas", "numpy")},
                           "python": platform.python_version()},
              "cases": []}
    for file, (batch_key, n_top_genes) in DATASETS.items():
        for flavor in FLAVORS:
            for key in (None, batch_key):
                chosen = selected_positions(file, flavor, key, n_top_genes)
                result["cases"].append({"dataset": file, "flavor": flavor, "batch_key": key,
                                        "n_top_genes": n_top_genes, "selected": chosen})
                print(file, flavor, key, len(chosen))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, separators=(",", ":")) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
