"""``model.train(deterministic=True)`` reaches the Trainer, restores torch's flags afterwards, and
changes nothing on the CPU (where the kernels are deterministic anyway)."""

from __future__ import annotations

import torch
from rel_helpers import MODEL, tiny_adata


def test_deterministic_flag_is_passed_on_restored_and_neutral_on_cpu():
    from snakevi.model import SCVI

    adata = tiny_adata()
    SCVI.setup_anndata(adata, batch_key="batch")
    flags = (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark)
    det = SCVI(adata, seed=0, **MODEL).train(max_epochs=2, batch_size=32, deterministic=True,
                                              accelerator="cpu", enable_progress_bar=False)
    assert det.trainer.deterministic is True
    assert (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark) == flags
    default = SCVI(adata, seed=0, **MODEL).train(max_epochs=2, batch_size=32, accelerator="cpu",
                                                  enable_progress_bar=False)
    assert default.trainer.deterministic is False
    a, b = det.module.state_dict(), default.module.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert det.history.equals(default.history)
