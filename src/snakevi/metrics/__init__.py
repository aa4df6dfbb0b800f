"""Integration-quality metrics: the scib-metrics set in numpy and scipy.

Same names and definitions as scib-metrics (0.5.x, Luecken et al. 2022; BRAS from
Rautenstrauch & Ohler 2025), checked against it on real data by ``benchmarks/scib_crosscheck.py``.

Bio conservation: :func:`isolated_labels`, :func:`nmi_ari_cluster_labels_kmeans`,
:func:`silhouette_label`, :func:`clisi_knn`. Batch correction: :func:`bras` (scib-metrics'
default batch silhouette; the classic one is :func:`silhouette_batch`), :func:`ilisi_knn`,
:func:`kbet_per_label`, :func:`graph_connectivity`, :func:`pcr_comparison`.
:func:`integration_metrics` computes them all (one kNN search) with the aggregates, and
:func:`pca_baseline` makes the unintegrated PCA embedding that PCR comparison needs.

Only numpy, scipy and pandas are used; scipy modules are imported inside the functions.
"""

from snakevi.metrics._inputs import MetricInputError, UndefinedMetricWarning
from snakevi.metrics._knn import Neighbors, exact_knn
from snakevi.metrics.benchmark import AGGREGATES, BATCH_METRICS, BIO_METRICS, integration_metrics
from snakevi.metrics.graph_connectivity import graph_connectivity
from snakevi.metrics.isolated_labels import isolated_labels
from snakevi.metrics.kbet import kbet, kbet_per_label
from snakevi.metrics.kmeans import KMeansResult, kmeans, scib_kmeans
from snakevi.metrics.lisi import clisi_knn, ilisi_knn, lisi_knn
from snakevi.metrics.nmi_ari import ari, nmi, nmi_ari_cluster_labels_kmeans
from snakevi.metrics.pca import log_normalize, pca_baseline
from snakevi.metrics.pcr import pcr_comparison, principal_component_regression
from snakevi.metrics.silhouette import bras, silhouette_batch, silhouette_label, silhouette_samples

__all__ = [
    "AGGREGATES",
    "BATCH_METRICS",
    "BIO_METRICS",
    "KMeansResult",
    "MetricInputError",
    "Neighbors",
    "UndefinedMetricWarning",
    "ari",
    "bras",
    "clisi_knn",
    "exact_knn",
    "graph_connectivity",
    "ilisi_knn",
    "integration_metrics",
    "isolated_labels",
    "kbet",
    "kbet_per_label",
    "kmeans",
    "scib_kmeans",
    "lisi_knn",
    "log_normalize",
    "nmi",
    "nmi_ari_cluster_labels_kmeans",
    "pca_baseline",
    "pcr_comparison",
    "principal_component_regression",
    "silhouette_batch",
    "silhouette_label",
    "silhouette_samples",
]
