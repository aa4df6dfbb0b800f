"""Graph connectivity: does each label form one connected piece of the kNN graph? (batch correction)."""

from __future__ import annotations

import numpy as np

from snakevi.metrics._inputs import as_codes, as_embedding
from snakevi.metrics._knn import Neighbors, exact_knn


def graph_connectivity(X, labels, *, k: int = 15) -> float:
    """Mean over labels of the share of the label's cells in its largest connected component.

    The graph is the directed kNN graph (scib-metrics uses k = 15), restricted to the cells of
    one label; components are strongly connected components, as in scib-metrics. 1 when every
    label is one piece; a label split by batch into separate islands scores low.

    Parameters
    ----------
    X
        (n_cells, n_dims) embedding, or :class:`~snakevi.metrics.Neighbors` computed beforehand
        (its first ``k`` neighbours are used).
    labels
        (n_cells,) cell-type labels (integers or strings).
    k
        Neighbours per cell, the cell itself included.

    Returns
    -------
    float
        In (0, 1], higher is better.
    """
    from scipy.sparse.csgraph import connected_components

    nb = X.subset(k) if isinstance(X, Neighbors) else exact_knn(as_embedding(X), k)
    codes, _ = as_codes(labels, "labels", nb.n_cells)
    graph = nb.distance_graph()
    shares = []
    for label in np.unique(codes):
        mask = codes == label
        sub = graph[mask][:, mask]
        _, comp = connected_components(sub, directed=True, connection="strong")
        shares.append(np.bincount(comp).max() / mask.sum())
    return float(np.mean(shares))
