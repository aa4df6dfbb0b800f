"""Seeded negative-binomial counts with cell groups and batch effects, for tests and benchmarks.

Cells are generated in fixed blocks of ``_BLOCK`` cells, each from its own random stream
``default_rng([seed, 1, block])``, so the result depends only on the arguments (not on the
number of threads), memory stays bounded (one dense float32 block per thread) and blocks can
run in parallel: numpy's samplers release the GIL.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import scipy.sparse as sp

#: Cells per generation block. Part of the definition of the output: changing it changes the
#: matrix a seed gives.
_BLOCK = 2048

#: Within-group spread of a cell's programme loadings (relative to the spread between groups).
_CELL_SD = 0.3


def _names(prefix: str, n: int) -> list[str]:
    return [f"{prefix}{i}" for i in range(n)]


def simulate(
    n_cells: int = 2000,
    n_genes: int = 500,
    n_batches: int = 2,
    n_groups: int = 3,
    seed: int = 0,
    *,
    batch_effect: float = 0.5,
    library_log_mean: float = 8.0,
    library_log_sd: float = 0.3,
    dispersion: float | np.ndarray = 5.0,
    sparse: bool = True,
    n_jobs: int | None = None,
):
    """Simulate a count matrix with cell groups, batch effects and varying library sizes.

    Generative model, for cell ``c`` in group ``k`` and batch ``b``, gene ``g``:

    - gene baseline ``a_g ~ N(0, 1)``; ``R = n_groups`` gene programmes ``V_rg ~ N(0, 1)``;
      group loadings ``W_kr ~ N(0, 1)``; each cell's loadings ``u_c = W_k + 0.3 N(0, I)``;
    - batch log fold change ``d_bg ~ N(0, batch_effect**2)`` (multiplicative per gene and batch);
    - expression proportions ``p_c = softmax(a + u_c V / sqrt(R) + d_b)``;
    - library size ``l_c ~ LogNormal(library_log_mean, library_log_sd**2)``;
    - counts ``x_cg ~ Poisson(Gamma(shape=theta_g, scale=l_c p_cg / theta_g))``, i.e. negative
      binomial with mean ``l_c p_cg`` and inverse dispersion ``theta_g`` (``dispersion``).

    Parameters
    ----------
    n_cells, n_genes
        Matrix shape.
    n_batches, n_groups
        Number of batches and of cell groups; cells are assigned uniformly at random.
    seed
        Same seed and arguments give the identical matrix.
    batch_effect
        Standard deviation of the per-gene, per-batch log fold change (0: no batch effect).
    library_log_mean, library_log_sd
        Mean and sd of the log library size (8.0 is about 3000 counts per cell). With small
        libraries some cells may get zero counts; filter those before ``setup_anndata``.
    dispersion
        Inverse dispersion ``theta`` of the negative binomial: a scalar or one value per gene
        (larger is closer to Poisson).
    sparse
        CSR (default) or dense ``X``.
    n_jobs
        Threads generating blocks (default: up to 4 CPUs). Does not change the result.

    Returns
    -------
    anndata.AnnData
        ``X`` float32 integer counts (CSR unless ``sparse=False``), ``obs["batch"]``
        (categories ``batch0``, ``batch1``, ...) and ``obs["label"]`` (``group0``, ...),
        obs_names ``cell0..``, var_names ``gene0..``, parameters in ``uns["simulation"]``.

    Examples
    --------
    >>> adata = simulate(n_cells=100, n_genes=20, seed=1)
    >>> adata.X.shape, list(adata.obs["batch"].cat.categories)
    ((100, 20), ['batch0', 'batch1'])
    """
    import anndata

    for name, value in (("n_cells", n_cells), ("n_genes", n_genes), ("n_batches", n_batches), ("n_groups", n_groups)):
        if int(value) < 1:
            raise ValueError(f"{name} must be at least 1, got {value!r}.")
    theta = np.broadcast_to(np.asarray(dispersion, dtype=np.float32), (n_genes,))
    if not np.all(np.isfinite(theta) & (theta > 0)):
        raise ValueError(f"dispersion must be positive and finite (a scalar or {n_genes} values).")

    rng = np.random.default_rng([seed, 0])
    n_prog = n_groups
    gene_base = rng.normal(0.0, 1.0, n_genes).astype(np.float32)
    programmes = (rng.normal(0.0, 1.0, (n_prog, n_genes)) / np.sqrt(n_prog)).astype(np.float32)
    loadings = rng.normal(0.0, 1.0, (n_groups, n_prog)).astype(np.float32)
    batch_lfc = rng.normal(0.0, batch_effect, (n_batches, n_genes)).astype(np.float32)
    batch = rng.integers(n_batches, size=n_cells)
    group = rng.integers(n_groups, size=n_cells)
    library = np.exp(rng.normal(library_log_mean, library_log_sd, n_cells))
    scalar_theta = np.ndim(dispersion) == 0

    def block(i: int):
        lo, hi = i * _BLOCK, min((i + 1) * _BLOCK, n_cells)
        brng = np.random.default_rng([seed, 1, i])
        u = loadings[group[lo:hi]] + _CELL_SD * brng.normal(size=(hi - lo, n_prog)).astype(np.float32)
        # float32 throughout: this block is the bulk of the work and counts need no more precision.
        e = u @ programmes
        e += gene_base
        e += batch_lfc[batch[lo:hi]]
        e -= e.max(axis=1, keepdims=True)
        np.exp(e, out=e)
        # scale = library * softmax / theta, in place
        e *= (library[lo:hi] / e.sum(axis=1, dtype=np.float64)).astype(np.float32)[:, None]
        e /= theta
        scale = e
        shape = float(theta[0]) if scalar_theta else np.broadcast_to(theta, scale.shape)
        lam = brng.standard_gamma(shape, size=scale.shape, dtype=np.float32)
        lam *= scale
        counts = brng.poisson(lam)
        pos = np.flatnonzero(counts)
        return (
            counts.ravel()[pos].astype(np.float32),
            (pos % n_genes).astype(np.int32),
            np.count_nonzero(counts, axis=1),
        )

    n_blocks = -(-n_cells // _BLOCK)
    workers = min(n_blocks, n_jobs or min(4, os.cpu_count() or 1))
    if workers > 1:
        with ThreadPoolExecutor(workers) as pool:
            parts = list(pool.map(block, range(n_blocks)))
    else:
        parts = [block(i) for i in range(n_blocks)]
    data = np.concatenate([d for d, _, _ in parts])
    indices = np.concatenate([j for _, j, _ in parts])
    indptr = np.zeros(n_cells + 1, dtype=np.int64)
    np.cumsum(np.concatenate([c for _, _, c in parts]), out=indptr[1:])
    if indptr[-1] < np.iinfo(np.int32).max:
        indptr = indptr.astype(np.int32)
    X = sp.csr_matrix((data, indices, indptr), shape=(n_cells, n_genes))
    if not sparse:
        X = X.toarray()

    import pandas as pd  # with anndata, here: importing snakevi.data must stay light

    obs = pd.DataFrame(
        {
            "batch": pd.Categorical.from_codes(batch, categories=_names("batch", n_batches)),
            "label": pd.Categorical.from_codes(group, categories=_names("group", n_groups)),
        },
        index=pd.Index(_names("cell", n_cells)),
    )
    var = pd.DataFrame(index=pd.Index(_names("gene", n_genes)))
    adata = anndata.AnnData(X=X, obs=obs, var=var)
    adata.uns["simulation"] = {
        "seed": int(seed),
        "n_batches": int(n_batches),
        "n_groups": int(n_groups),
        "batch_effect": float(batch_effect),
        "library_log_mean": float(library_log_mean),
        "library_log_sd": float(library_log_sd),
        "dispersion": float(theta[0]) if scalar_theta else theta.tolist(),
    }
    return adata
