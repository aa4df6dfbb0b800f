"""snakevi's integration metrics equal scib-metrics 0.5.10's, metric by metric, on real data.

The reference values were computed by scib-metrics itself (``benchmarks/scib_reference.py``,
run in the environment ``benchmarks/setup_scib_env.sh`` makes; versions in the file). Here the
same recipe runs on snakevi's side: the PCA baseline of the integration step (all cells, fixed
start vector), the same derived embedding, the same scored cells, then
:func:`snakevi.metrics.integration_metrics`.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT.parent / "shared" / "data"
REFERENCE = json.loads((Path(__file__).parent / "data" / "scib_metrics_reference.json").read_text())
TOLERANCE = 1e-3

pytestmark = pytest.mark.skipif(not DATA.is_dir(), reason=f"the shared datasets ({DATA}) are not on this machine")


def _recipe():
    spec = importlib.util.spec_from_file_location("scib_reference", ROOT / "benchmarks" / "scib_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


RECIPE = _recipe()


@pytest.fixture(scope="module")
def pca_of():
    """The integration step's PCA baseline of all cells of each dataset (computed once)."""
    import anndata as ad

    from snakevi.steps.integration import baseline_embedding

    cache = {}

    def get(file):
        if file not in cache:
            adata = ad.read_h5ad(DATA / file)
            cache[file] = (adata.obs, baseline_embedding(adata.X))
        return cache[file]

    return get


@pytest.mark.parametrize("case", sorted(REFERENCE["cases"]))
def test_every_metric_equals_scib_metrics(case, pca_of):
    import warnings

    from snakevi.metrics import integration_metrics

    warnings.simplefilter("ignore")  # "only one batch" in the case without a batch key: asserted below
    ref = REFERENCE["cases"][case]
    obs, pca = pca_of(ref["dataset"])
    batch_key, labels_key, unlabeled = ref["batch_key"], ref["labels_key"], ref["unlabeled_category"]
    batch = np.asarray(obs[batch_key].astype(str)) if batch_key else np.zeros(len(obs), dtype=str)
    labels = np.asarray(obs[labels_key].astype(str))
    embeddings = {"PCA": pca, "PCA centred per batch": RECIPE.centred_per_batch(pca, batch)}
    scored = labels != unlabeled if unlabeled else np.ones(len(labels), dtype=bool)
    assert int(scored.sum()) == ref["n_cells_scored"] and len(labels) == ref["n_cells_pca"]
    for name, expected in ref["metrics"].items():
        ours = integration_metrics(embeddings[name][scored], batch[scored], labels[scored],
                                   pre_integrated=pca[scored])
        for metric, value in expected.items():
            assert ours[metric] == pytest.approx(value, abs=TOLERANCE), (case, name, metric)
        if batch_key is None:  # scib-metrics computes no batch correction and no Total: neither do we
            assert np.isnan(ours["Batch correction"]) and np.isnan(ours["Total"]) and np.isnan(ours["iLISI"])


def test_the_reference_says_what_made_it():
    assert REFERENCE["versions"]["scib-metrics"] == "0.5.10"
    assert REFERENCE["made_by"] == "benchmarks/scib_reference.py"
    assert {"cellbench", "cellbench_no_batch", "kang_dendritic_unlabelled"} == set(REFERENCE["cases"])
