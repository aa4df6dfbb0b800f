"""All scib-metrics integration metrics of one embedding at once, with their aggregates."""

from __future__ import annotations

import logging
import time
import warnings
from typing import Literal

import numpy as np

from snakevi.metrics._inputs import UndefinedMetricWarning, as_codes, as_embedding, check_same_cells
from snakevi.metrics._knn import exact_knn
from snakevi.metrics.graph_connectivity import graph_connectivity
from snakevi.metrics.isolated_labels import isolated_labels_from_samples
from snakevi.metrics.kbet import kbet_per_label
from snakevi.metrics.lisi import clisi_from_lisi, ilisi_from_lisi, lisi_from_probabilities, neighbor_probabilities
from snakevi.metrics.nmi_ari import nmi_ari_cluster_labels_kmeans
from snakevi.metrics.pcr import pcr_comparison
from snakevi.metrics.silhouette import _silhouette_batch, _silhouette_samples, silhouette_label_from_samples

log = logging.getLogger(__name__)

#: Bio-conservation metrics, scib-metrics' display names, in its order.
BIO_METRICS = ("Isolated labels", "KMeans NMI", "KMeans ARI", "Silhouette label", "cLISI")
#: Batch-correction metrics with BRAS (scib-metrics' current default) as the batch silhouette.
BATCH_METRICS = ("BRAS", "iLISI", "KBET", "Graph connectivity", "PCR comparison")
#: The aggregates and their weights (scib: 0.4 batch correction + 0.6 bio conservation).
AGGREGATES = ("Batch correction", "Bio conservation", "Total")
TOTAL_WEIGHTS = {"Batch correction": 0.4, "Bio conservation": 0.6}
#: Neighbourhood sizes of scib-metrics' graphs (the cell itself included).
K_GRAPH_CONNECTIVITY, K_KBET, K_LISI = 15, 50, 90


def _aggregate(values: dict[str, float], names) -> float:
    defined = [values[m] for m in names if m in values and np.isfinite(values[m])]
    return float(np.mean(defined)) if defined else float("nan")


def integration_metrics(
    embedding,
    batch,
    labels,
    *,
    pre_integrated=None,
    seed: int = 0,
    batch_silhouette: Literal["bras", "classic"] = "bras",
) -> dict[str, float]:
    """scib-metrics' integration metrics of one embedding, under its display names.

    Bio conservation: "Isolated labels", "KMeans NMI", "KMeans ARI", "Silhouette label",
    "cLISI". Batch correction: "BRAS" (``batch_silhouette="classic"``: "Silhouette batch", the
    classic ASW batch, instead), "iLISI", "KBET", "Graph connectivity" and, when
    ``pre_integrated`` is given, "PCR comparison". One exact kNN search at k = 90 serves the
    graphs at 15 (graph connectivity), 50 (kBET) and 90 (LISI), as in scib-metrics' Benchmarker.
    The numbers are scib-metrics 0.5.10's (``Benchmarker`` defaults, ``get_results(
    min_max_scale=False)``) to 1e-3 per metric, held to values scib-metrics itself computed on
    real data (``tests/metrics/test_scib_reference.py``, ``benchmarks/scib_reference.py``).
    One difference in method: exact rather than approximate (pynndescent) neighbours, which
    moves no metric by 1e-4 there (``benchmarks/scib_crosscheck.py``); k-means draws jax's
    own random numbers (:func:`~snakevi.metrics.kmeans.scib_kmeans`).

    Aggregates: "Bio conservation" and "Batch correction" are the means of the defined metrics
    of their group, and "Total" = 0.4 x Batch correction + 0.6 x Bio conservation. Values are
    not min-max scaled across methods (scib-metrics' ``get_results(min_max_scale=True)``): this
    scores one embedding at a time, so the numbers are comparable with scib-metrics' unscaled
    table. When a whole group is undefined (one batch, one label), so is Total: scib-metrics
    gives none either, and a Total of one group would not compare with Totals of both.

    Parameters
    ----------
    embedding
        (n_cells, n_dims) integrated embedding (e.g. ``obsm["X_scVI"]``).
    batch, labels
        (n_cells,) batch and cell-type label of each cell (integers or strings).
    pre_integrated
        (n_cells, n_dims_pre) unintegrated embedding for "PCR comparison", e.g.
        :func:`~snakevi.metrics.pca_baseline` of the counts. ``None``: PCR comparison is left
        out of the dict and of the batch-correction mean.
    seed
        Seed of k-means' jax key and of kBET's eigensolver start vector (0: scib-metrics' numbers).
    batch_silhouette
        ``"bras"`` (default, scib-metrics' current choice) or ``"classic"``.

    Returns
    -------
    dict[str, float]
        Metric name -> value (higher is better for all, most in [0, 1]), then the aggregates.
        With a single batch every batch-correction metric is NaN (one warning); with a single
        label every bio-conservation metric is NaN; either way Total is NaN.
    """
    if batch_silhouette not in ("bras", "classic"):
        raise ValueError(f"batch_silhouette must be 'bras' or 'classic', got {batch_silhouette!r}.")
    X = as_embedding(embedding)
    n = X.shape[0]
    batch_codes, _ = as_codes(batch, "batch", n)
    label_codes, _ = as_codes(labels, "labels", n)
    X_pre = None
    if pre_integrated is not None:
        X_pre = as_embedding(pre_integrated, "pre_integrated")
        check_same_cells(X_pre.shape[0], n, "pre_integrated", "embedding")
    n_batches, n_labels = int(batch_codes.max()) + 1, int(label_codes.max()) + 1
    timings: dict[str, float] = {}
    tic = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal tic
        now = time.perf_counter()
        timings[name] = now - tic
        tic = now

    neighbors = exact_knn(X, K_LISI)
    probabilities = neighbor_probabilities(neighbors)  # shared by cLISI and iLISI
    lap("knn+lisi weights")
    out: dict[str, float] = {}

    if n_labels < 2:
        warnings.warn("Only one label: bio-conservation metrics are not defined; they are reported as NaN.",
                      UndefinedMetricWarning, stacklevel=2)
        out.update(dict.fromkeys(BIO_METRICS, float("nan")))
    else:
        widths = _silhouette_samples(X, label_codes, "euclidean", "nearest")  # silhouette label + isolated labels
        out["Isolated labels"] = isolated_labels_from_samples(widths, label_codes, batch_codes)
        lap("silhouette label")
        nmi_ari = nmi_ari_cluster_labels_kmeans(X, label_codes, seed=seed)
        out["KMeans NMI"], out["KMeans ARI"] = nmi_ari["nmi"], nmi_ari["ari"]
        lap("kmeans")
        out["Silhouette label"] = silhouette_label_from_samples(widths)
        out["cLISI"] = clisi_from_lisi(lisi_from_probabilities(probabilities, neighbors, label_codes), n_labels)

    silhouette_name = "BRAS" if batch_silhouette == "bras" else "Silhouette batch"
    batch_names = (silhouette_name, *BATCH_METRICS[1:4]) + (("PCR comparison",) if X_pre is not None else ())
    if n_batches < 2:
        warnings.warn("Only one batch: batch-correction metrics are not defined; they are reported as NaN.",
                      UndefinedMetricWarning, stacklevel=2)
        out.update(dict.fromkeys(batch_names, float("nan")))
    else:
        if batch_silhouette == "bras":
            out["BRAS"] = _silhouette_batch(X, label_codes, batch_codes, True, "cosine", "mean_other", "BRAS")
        else:
            out["Silhouette batch"] = _silhouette_batch(X, label_codes, batch_codes, True, "euclidean", "nearest",
                                                        "Silhouette batch")
        lap("batch silhouette")
        out["iLISI"] = ilisi_from_lisi(lisi_from_probabilities(probabilities, neighbors, batch_codes), n_batches)
        out["KBET"] = kbet_per_label(neighbors, batch_codes, label_codes, k=K_KBET, seed=seed)
        lap("kbet")
        out["Graph connectivity"] = graph_connectivity(neighbors, label_codes, k=K_GRAPH_CONNECTIVITY)
        if X_pre is not None:
            out["PCR comparison"] = pcr_comparison(X_pre, X, batch_codes)
        lap("graph connectivity + pcr")
    log.debug("integration_metrics timings (s): %s", {k: round(v, 2) for k, v in timings.items()})

    out["Batch correction"] = _aggregate(out, batch_names)
    out["Bio conservation"] = _aggregate(out, BIO_METRICS)
    out["Total"] = float(sum(TOTAL_WEIGHTS[g] * out[g] for g in TOTAL_WEIGHTS))  # NaN if a group is
    return out
