"""Mixed precision on real data: bf16-mixed on the CPU reaches the ELBO of float32 within 1%."""

from __future__ import annotations

import anndata
import numpy as np
import pytest

from snakevi.model import SCVI

pytestmark = pytest.mark.slow


def test_bf16_mixed_elbo_is_within_one_percent_of_float32(kang_path):
    adata = anndata.read_h5ad(kang_path)
    # 2,000 cells x the 1,000 genes of most counts: a short run that still learns (about 10 s each).
    adata = adata[:2000, np.argsort(-np.asarray(adata.X.sum(axis=0)).ravel())[:1000]].copy()
    SCVI.setup_anndata(adata, batch_key="donor")
    final = {}
    for precision in ("32", "bf16-mixed"):
        model = SCVI(adata, seed=0)
        model.train(max_epochs=15, precision=precision, enable_progress_bar=False, check_val_every_n_epoch=1)
        final[precision] = model.history["elbo_validation"].to_numpy()
        assert model.trainer.precision == precision
    assert np.all(np.isfinite(final["bf16-mixed"]))
    relative = abs(final["bf16-mixed"][-1] - final["32"][-1]) / abs(final["32"][-1])
    assert relative < 0.01, f"bf16-mixed final elbo_validation {final['bf16-mixed'][-1]} vs float32 {final['32'][-1]}"
    assert final["bf16-mixed"][-1] < final["bf16-mixed"][0]  # it trained
    assert not np.array_equal(final["bf16-mixed"], final["32"])  # and really in another precision
