"""Seeded benchmark datasets: simulated counts written once to an .h5ad and reused.

The counts come from :func:`snakevi.data.simulate` with a library size chosen so that about
7.6% of the entries are non-zero (as in the issue's reference measurement): 2 batches,
5 cell groups, ``library_log_mean=5.25``.
"""

from __future__ import annotations

from pathlib import Path

#: ``simulate`` settings shared by every benchmark dataset.
SIM_KWARGS = {"n_batches": 2, "n_groups": 5, "library_log_mean": 5.25}


def simulated_h5ad(n_cells: int, n_genes: int, *, seed: int = 0, folder: str | Path) -> Path:
    """Path of the simulated ``n_cells x n_genes`` dataset, written on first use (atomically)."""
    from snakevi._atomic import atomic_path
    from snakevi.data import simulate

    path = Path(folder) / f"sim_{n_cells}x{n_genes}_seed{seed}.h5ad"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        adata = simulate(n_cells, n_genes, seed=seed, **SIM_KWARGS)
        with atomic_path(path) as tmp:
            adata.write_h5ad(tmp)
    return path
