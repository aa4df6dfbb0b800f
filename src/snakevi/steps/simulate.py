"""Demo data: a simulated count matrix written as .h5ad (the workflow's ``simulate`` rule)."""

from __future__ import annotations

import logging
import os

from snakevi.steps._io import write_h5ad_atomic

log = logging.getLogger(__name__)


def simulate_dataset(h5ad_out: str | os.PathLike, **params):
    """Write :func:`snakevi.data.simulate` ``(**params)`` to ``h5ad_out`` (atomically).

    Parameters
    ----------
    h5ad_out
        The .h5ad file to write; ``obs`` has ``batch`` and ``label``.
    **params
        ``n_cells``, ``n_genes``, ``n_batches``, ``n_groups``, ``seed``, ``batch_effect``, ...
    """
    from snakevi.data import simulate

    adata = simulate(**params)
    write_h5ad_atomic(adata, h5ad_out)
    log.info("simulated %d cells x %d genes -> %s", adata.n_obs, adata.n_vars, h5ad_out)
    return adata
