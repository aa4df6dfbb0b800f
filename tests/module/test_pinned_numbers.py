"""Pinned numbers: a short seeded SCVI run's losses, asserted to a tolerance.

Speed work (a sparse likelihood, fused kernels, another loader) must not change the model: the
values below were computed on 2026-12-06 (commit daeeb14, before the sparse likelihood of issue
18) by the code as it then was, one torch thread, and every later version must give them to
``RTOL``. Float32 sums taken in another order move them by about 1e-6; a change of formula,
constant, default or minibatch order moves them far more. If a change is meant to alter the
numbers, recompute them (the run below, printed) and say so in the commit.
"""

from __future__ import annotations

import pytest

from snakevi.data.simulate import simulate
from snakevi.model import SCVI

RTOL = 2e-5
PINNED = {
    "zinb": {"elbo_train": [586.998168, 573.043206, 561.081687],
             "reconstruction_loss_train": [586.370101, 572.242122, 559.99841],
             "elbo_validation": [575.678023, 563.94753, 553.42261]},
    "nb": {"elbo_train": [557.106544, 544.823996, 534.589669],
           "reconstruction_loss_train": [556.473817, 544.00938, 533.491374],
           "elbo_validation": [545.599691, 535.906848, 527.011334]},
    "poisson": {"elbo_train": [3989.81948, 3720.616122, 3482.417864],
                "reconstruction_loss_train": [3989.214757, 3719.827734, 3481.328255],
                "elbo_validation": [3547.655069, 3324.216201, 3119.370234]},
}


@pytest.mark.parametrize("likelihood", list(PINNED))
def test_a_short_seeded_run_gives_the_pinned_losses(likelihood):
    adata = simulate(n_cells=400, n_genes=120, n_batches=2, seed=3)
    SCVI.setup_anndata(adata, batch_key="batch")
    model = SCVI(adata, n_latent=5, n_hidden=32, gene_likelihood=likelihood, seed=0)
    model.train(max_epochs=3, batch_size=64, check_val_every_n_epoch=1, enable_progress_bar=False)
    for column, pinned in PINNED[likelihood].items():
        got = [float(v) for v in model.history[column]]
        assert got == pytest.approx(pinned, rel=RTOL), f"{likelihood} {column}: {got} != pinned {pinned}"
