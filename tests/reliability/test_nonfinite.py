"""A loss that turns NaN stops the train step with an error naming epoch, step and metric, says
what to try, writes no model, and keeps the checkpoint of the last good epoch."""

from __future__ import annotations

import json

import pandas as pd
import torch
from rel_helpers import MODEL, listing, sha256, snakevi, tiny_adata


def test_nan_loss_stops_with_epoch_step_metric_and_keeps_the_last_good_checkpoint(tmp_path):
    from snakevi.steps import prepare, register

    tiny_adata(n_cells=120, n_genes=30).write_h5ad(tmp_path / "data.h5ad")
    register(tmp_path / "data.h5ad", tmp_path / "registry.json", batch_key="batch")
    prepare(tmp_path / "data.h5ad", tmp_path / "registry.json", tmp_path / "prepared", batch_size=32)
    digest = sha256(tmp_path / "prepared")
    out, ckpt = tmp_path / "out", tmp_path / "checkpoints"
    # lr=1.5 is far too high: with this data and seed, epoch 0 trains and epoch 1 diverges.
    proc = snakevi("train", "--prepared", tmp_path / "prepared", "--registry", tmp_path / "registry.json",
                   "--model", out / "model", "--history", out / "history.csv", "--checkpoint-dir", ckpt,
                   "--model-params", json.dumps(MODEL), "--train-params", json.dumps({"max_epochs": 20, "plan": {"lr": 1.5}}),
                   "--seed", "0", "--accelerator", "cpu", "--threads", "1", "--checkpoint-every-seconds", "0")
    err = proc.stderr
    assert proc.returncode == 1, err[-3000:]
    assert "Traceback" not in err
    saved = torch.load(ckpt / "last.ckpt", weights_only=True)
    good = int(saved["epoch"])
    assert good >= 1, "the loss must diverge after a good epoch for this test to mean anything"
    assert f"train failed: StepError: Non-finite training loss (train_loss) = nan at epoch {good}, batch 0 " \
        "(global step " in err
    assert "lower learning rate" in err and "check the data" in err
    assert f"The last checkpoint (written after a good epoch) is kept in {ckpt / 'last.ckpt'}" in err
    # The kept checkpoint is finite and matches the epochs the live history shows.
    assert all(torch.isfinite(t).all() for t in saved["module"].values())
    assert len(pd.read_csv(ckpt / "history.live.csv")) == good
    assert listing(out) == []
    assert sha256(tmp_path / "prepared") == digest
