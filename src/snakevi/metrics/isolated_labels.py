"""Isolated labels: are the labels seen in the fewest batches still kept apart? (bio conservation)."""

from __future__ import annotations

import numpy as np

from snakevi.metrics._inputs import as_codes, as_embedding, warn_undefined
from snakevi.metrics.silhouette import _silhouette_samples


def isolated_label_codes(label_codes: np.ndarray, batch_codes: np.ndarray,
                         iso_threshold: int | None = None) -> np.ndarray:
    """Codes of the labels present in at most ``iso_threshold`` batches (default: the fewest any label has)."""
    n_batch = int(batch_codes.max()) + 1
    pairs = np.unique(label_codes * n_batch + batch_codes)
    batches_per_label = np.bincount(pairs // n_batch, minlength=int(label_codes.max()) + 1)
    present = np.flatnonzero(batches_per_label > 0)
    threshold = batches_per_label[present].min() if iso_threshold is None else iso_threshold
    return present[batches_per_label[present] <= threshold]


def isolated_labels(X, labels, batch, *, rescale: bool = True, iso_threshold: int | None = None) -> float:
    """Isolated label score (ASW variant), as scib-metrics' ``isolated_labels``.

    Isolated labels are those found in the fewest batches (or in at most ``iso_threshold``
    batches). For each, the silhouette widths of its cells, computed against all labels
    (Euclidean, nearest other label), are averaged; the score is the mean over isolated
    labels. scib (the original package) can use a cluster-F1 variant instead; scib-metrics
    and this use the silhouette.

    Parameters
    ----------
    X
        (n_cells, n_dims) embedding.
    labels, batch
        (n_cells,) cell-type labels and batches (integers or strings).
    rescale
        Map silhouette widths to [0, 1] as ``(s + 1) / 2``.
    iso_threshold
        Largest number of batches a label may span to count as isolated; ``None``: the minimum
        over labels (so at least one label is always isolated).

    Returns
    -------
    float
        Higher means isolated labels are better separated; NaN (with a warning) when there is only one label.
    """
    X = as_embedding(X)
    label_codes, _ = as_codes(labels, "labels", X.shape[0])
    batch_codes, _ = as_codes(batch, "batch", X.shape[0])
    if label_codes.max() == 0:
        return warn_undefined("Isolated labels", "only one label")
    widths = _silhouette_samples(X, label_codes, "euclidean", "nearest")
    return isolated_labels_from_samples(widths, label_codes, batch_codes, rescale, iso_threshold)


def isolated_labels_from_samples(widths, label_codes, batch_codes, rescale=True, iso_threshold=None) -> float:
    """:func:`isolated_labels` from per-cell label silhouette widths computed beforehand."""
    widths = (widths + 1.0) / 2.0 if rescale else widths
    iso = isolated_label_codes(label_codes, batch_codes, iso_threshold)
    if iso.size == 0:
        return warn_undefined("Isolated labels", f"no label spans at most {iso_threshold} batches")
    return float(np.mean([widths[label_codes == lab].mean() for lab in iso]))
