"""snakevi's highly variable genes are scanpy 1.11's, gene for gene, on the shared datasets.

The reference lists were selected by scanpy itself (``benchmarks/scanpy_hvg_reference.py``, in
the environment ``benchmarks/setup_scib_env.sh`` makes; versions in the file): every flavour,
with and without the dataset's batch key.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
REFERENCE = json.loads((Path(__file__).parent / "reference" / "scanpy_hvg_reference.json").read_text())


@pytest.fixture(scope="module")
def datasets():
    import anndata as ad

    if not DATA.is_dir():
        pytest.skip(f"the shared datasets ({DATA}) are not on this machine")
    return {f: ad.read_h5ad(DATA / f) for f in {case["dataset"] for case in REFERENCE["cases"]}}


@pytest.mark.parametrize("case", REFERENCE["cases"],
                         ids=lambda c: f"{c['dataset'].split('_')[0]}-{c['flavor']}-{c['batch_key']}")
def test_the_gene_set_is_scanpy_s(case, datasets):
    from snakevi.data.hvg import highly_variable_genes

    adata = datasets[case["dataset"]]
    batches = None if case["batch_key"] is None else adata.obs[case["batch_key"]].astype(str).to_numpy()
    ours = highly_variable_genes(adata.X, case["n_top_genes"], batches, flavor=case["flavor"],
                                 gene_names=adata.var_names)["selected"]
    expected = np.asarray(case["selected"])
    only_ours, only_scanpy = np.setdiff1d(ours, expected), np.setdiff1d(expected, ours)
    assert only_ours.size == only_scanpy.size == 0, (
        f"{only_ours.size} genes only snakevi chose, {only_scanpy.size} only scanpy: "
        f"{list(adata.var_names[only_ours][:5])} / {list(adata.var_names[only_scanpy][:5])}")


def test_the_reference_covers_every_flavour_with_and_without_batches():
    from snakevi.data.hvg import HVG_FLAVORS

    assert REFERENCE["versions"]["scanpy"].startswith("1.11.")
    seen = {(c["flavor"], c["batch_key"] is None) for c in REFERENCE["cases"]}
    assert seen == {(f, b) for f in HVG_FLAVORS for b in (True, False)}
