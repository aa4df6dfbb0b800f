"""kBET per label (Büttner et al. 2019), as scib-metrics' ``kbet_per_label`` (batch correction).

Per cell-type label: the UMAP connectivity graph (k = 50) restricted to the label's cells is
embedded with a multiscale diffusion map, each cell's ``k0`` nearest neighbours in that space
(plus itself) are taken, and a chi-square test asks whether their batch composition matches
the label's overall batch composition. The label's score is the share of cells whose test is
not rejected at ``alpha``; the metric is the mean over labels. Departures from scib-metrics:
neighbours in the diffusion space are exact (scib-metrics: pynndescent) and the eigensolver
starts from a seeded vector, so results do not depend on earlier ARPACK calls.
"""

from __future__ import annotations

import logging

import numpy as np

from snakevi.metrics._inputs import as_codes, as_embedding, warn_undefined
from snakevi.metrics._knn import Neighbors, exact_knn
from snakevi.metrics._umap_graph import umap_connectivities

log = logging.getLogger(__name__)

#: Below this many cells the diffusion map uses a dense eigendecomposition (same result, no ARPACK).
_DENSE_EIGEN_MAX = 1000


def kbet(neighbor_batches: np.ndarray, batch_codes: np.ndarray,
         alpha: float = 0.05) -> tuple[float, np.ndarray, np.ndarray]:
    """kBET acceptance rate of a set of neighbourhoods.

    Parameters
    ----------
    neighbor_batches
        (n_cells, k) batch code of each cell's neighbours (the cell itself included).
    batch_codes
        (n_cells,) batch codes 0..B-1 of the cells; their frequencies are the expected composition.
    alpha
        Significance level of the chi-square test (B - 1 degrees of freedom).

    Returns
    -------
    tuple
        Acceptance rate (share of cells with p >= alpha), test statistics and p-values per cell.
    """
    from scipy.special import gammaincc

    n_batches = int(batch_codes.max()) + 1
    expected = np.bincount(batch_codes, minlength=n_batches) / batch_codes.size * neighbor_batches.shape[1]
    observed = np.stack([(neighbor_batches == b).sum(axis=1) for b in range(n_batches)], axis=1)
    stats = (np.square(observed - expected) / expected).sum(axis=1)
    p_values = gammaincc((n_batches - 1) / 2.0, stats / 2.0)  # chi-square survival function
    return float((p_values >= alpha).mean()), stats, p_values


def _diffusion_embedding(conn, n_comps: int, seed: int) -> np.ndarray:
    """Multiscale diffusion map of a connectivity graph (scanpy/scib-metrics' recipe)."""
    from scipy.linalg import eigh
    from scipy.sparse import diags
    from scipy.sparse.linalg import eigsh

    q = np.asarray(conn.sum(axis=0)).ravel()
    K = diags(1.0 / q) @ conn @ diags(1.0 / q)  # density normalisation (Coifman et al. 2005)
    z = np.sqrt(np.asarray(K.sum(axis=0)).ravel())
    T = (diags(1.0 / z) @ K @ diags(1.0 / z)).tocsr()
    n = T.shape[0]
    n_comps = min(n_comps, n - 1)
    if n <= _DENSE_EIGEN_MAX:
        evals, evecs = eigh(T.toarray())
        top = np.argsort(-np.abs(evals), kind="stable")[:n_comps]  # ARPACK's 'LM': largest magnitude
        evals, evecs = evals[top], evecs[:, top]
    else:
        v0 = np.random.default_rng(seed).uniform(0.5, 1.5, size=n)
        evals, evecs = eigsh(T, k=n_comps, which="LM", v0=v0)
    # scib-metrics rounds eigenvalues to float32 and leaves those equal to 1 (the stationary
    # components) unscaled; the others are scaled by e / (1 - e), integrating out the time.
    e32 = evals.astype(np.float32) + np.float32(1e-8)
    with np.errstate(divide="ignore"):
        scale = np.where(e32 == 1, 1.0, e32 / (1 - e32)).astype(np.float64)
    return evecs * scale


def _kbet_one_label(conn_sub, batches_sub: np.ndarray, alpha: float, n_comps: int, seed: int) -> float:
    from scipy.sparse.csgraph import connected_components

    n_obs = conn_sub.shape[0]
    counts = np.bincount(batches_sub)
    k0 = int(min(70, max(10, np.floor(counts[counts > 0].mean() / 4))))
    n_comp, comp = connected_components(conn_sub, directed=True, connection="strong")
    keep = np.arange(n_obs)
    if n_comp > 1:
        sizes = np.bincount(comp)
        keep = np.flatnonzero(sizes[comp] >= 3 * k0)
        if keep.size / n_obs < 0.75:  # too much of the label lies in small islands: all rejected
            return 0.0
        conn_sub = conn_sub[keep][:, keep]
    if k0 + 1 > keep.size:  # cannot find k0 neighbours (scib-metrics' search fails and scores 0)
        return 0.0
    embedding = _diffusion_embedding(conn_sub, n_comps, seed)
    neighbors = exact_knn(embedding, k0 + 1)
    codes = np.unique(batches_sub[keep], return_inverse=True)[1]
    return kbet(codes[neighbors.indices], codes, alpha)[0]


def kbet_per_label(X, batch, labels, *, k: int = 50, alpha: float = 0.05, diffusion_n_comps: int = 100,
                   seed: int = 0, return_per_label: bool = False):
    """kBET acceptance rate per label, averaged over labels (scib-metrics' "KBET").

    Labels with fewer than 10 cells or a single batch are skipped (NaN in the per-label table);
    a label whose graph falls into islands smaller than ``3 * k0`` holding over a quarter of its
    cells scores 0, as in scib. ``k0 = clip(floor(mean cells per batch / 4), 10, 70)``.

    Parameters
    ----------
    X
        (n_cells, n_dims) embedding, or :class:`~snakevi.metrics.Neighbors` computed beforehand
        (its first ``k`` neighbours build the connectivity graph).
    batch, labels
        (n_cells,) batches and cell-type labels (integers or strings).
    k
        Neighbours of the UMAP connectivity graph, the cell itself included (scib-metrics: 50).
    alpha
        Significance level of each cell's test.
    diffusion_n_comps
        Diffusion-map components (capped at cells - 1).
    seed
        Seed of the eigensolver's start vector.
    return_per_label
        Also return ``{label: score}``.

    Returns
    -------
    float or (float, dict)
        Mean acceptance rate in [0, 1], higher means better mixing; NaN (with a warning) when no
        label can be tested (e.g. one batch only).
    """
    nb = X.subset(k) if isinstance(X, Neighbors) else exact_knn(as_embedding(X), k)
    batch_codes, _ = as_codes(batch, "batch", nb.n_cells)
    label_codes, label_names = as_codes(labels, "labels", nb.n_cells)
    conn = umap_connectivities(nb)
    scores = {}
    for code, name in enumerate(label_names):
        name = name.item() if isinstance(name, np.generic) else name  # plain str/int keys
        mask = label_codes == code
        sub_batches = batch_codes[mask]
        if mask.sum() < 10 or np.unique(sub_batches).size == 1:
            log.info("kBET: label %r has fewer than 10 cells or one batch; skipped.", name)
            scores[name] = float("nan")
            continue
        conn_sub = conn[mask][:, mask]
        scores[name] = _kbet_one_label(conn_sub, sub_batches, alpha, diffusion_n_comps, seed)
    values = np.array(list(scores.values()), dtype=np.float64)
    if np.isnan(values).all():
        score = warn_undefined("KBET", "no label has 10 or more cells from two or more batches")
    else:
        score = float(np.nanmean(values))
    return (score, scores) if return_per_label else score
