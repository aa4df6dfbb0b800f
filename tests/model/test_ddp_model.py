"""``SCVI.train(devices=2)`` from a plain session: two CPU processes train, the model gets the result."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch

from snakevi.data import simulate
from snakevi.model import SCANVI, SCVI
from snakevi.train.launch import free_port

ARGS = {"max_epochs": 2, "accelerator": "cpu", "batch_size": 32, "enable_progress_bar": False,
        "check_val_every_n_epoch": 1}


@pytest.fixture(scope="module")
def adata():
    adata = simulate(160, 30, seed=1)
    SCVI.setup_anndata(adata, batch_key="batch")
    return adata


def test_scvi_trains_with_two_processes_and_repeats_itself(adata):
    first, second = SCVI(adata, n_latent=4), SCVI(adata, n_latent=4)
    start = {k: v.clone() for k, v in first.module.state_dict().items()}
    first.train(devices=2, **ARGS)
    second.train(devices=2, **ARGS)
    assert first.is_trained and len(first.history_records) == 2
    assert first.history_records == second.history_records
    weights, again = first.module.state_dict(), second.module.state_dict()
    assert all(torch.equal(weights[k], again[k]) for k in weights)  # same seed, same processes: same model
    assert not torch.equal(weights["z_encoder.mean_encoder.weight"], start["z_encoder.mean_encoder.weight"])
    assert first.get_latent_representation().shape == (160, 4)
    assert len(first.train_indices) + len(first.validation_indices) == 160
    assert np.isfinite(first.history_records[-1]["elbo_validation"])


def _close_histories(one: list[dict], two: list[dict], rel: float, abs_: float, keys=None) -> None:
    """Same epochs and metrics; the main values within ``rel``, shares (accuracy ...) within ``abs_``.

    The VAE samples ``z`` from each rank's own RNG, so a 2-process run cannot repeat one process
    number for number (tests/train/test_ddp.py shows the exact match on deterministic modules).
    """
    assert len(one) == len(two) and all(a.keys() == b.keys() for a, b in zip(one, two))
    for a, b in zip(one, two):
        for key in keys or a:
            if key.startswith(("train_loss", "validation_loss", "elbo_", "reconstruction_loss_")):
                assert b[key] == pytest.approx(a[key], rel=rel), key
            elif key.endswith(("_accuracy", "_f1_score")):
                assert b[key] == pytest.approx(a[key], abs=abs_), key


def test_adversarial_scvi_trains_with_two_processes_like_one_with_the_doubled_batch(adata):
    one = SCVI(adata, n_latent=4).train(adversarial_classifier=True, **{**ARGS, "batch_size": 32})
    two = SCVI(adata, n_latent=4).train(devices=2, adversarial_classifier=True, **{**ARGS, "batch_size": 16})
    _close_histories(one.history_records, two.history_records, rel=0.03, abs_=0)
    assert len(two.history_records) == 2 and np.isfinite(two.history_records[-1]["elbo_validation"])


def test_scanvi_trains_with_two_processes_like_one_with_the_doubled_batch():
    adata = simulate(160, 30, n_batches=2, n_groups=3, seed=1)
    labels = adata.obs["label"].astype(str).to_numpy(dtype=object)
    labels[::3] = "Unknown"
    adata.obs["lab"] = pd.Categorical(labels)
    SCANVI.setup_anndata(adata, labels_key="lab", unlabeled_category="Unknown", batch_key="batch")
    args = {**ARGS, "n_samples_per_label": 20}
    one = SCANVI(adata, n_latent=4, n_hidden=16).train(**{**args, "batch_size": 32})
    two = SCANVI(adata, n_latent=4, n_hidden=16).train(devices=2, **{**args, "batch_size": 16})
    assert "validation_accuracy" in two.history_records[0]
    _close_histories(one.history_records, two.history_records, rel=0.04, abs_=0.03)
    assert two.predict().shape == (160,)


def test_more_processes_than_cores_is_refused_before_any_starts(adata):
    with pytest.raises(ValueError, match=r"devices=64: more training processes than CPU cores"):
        SCVI(adata).train(devices=64, **ARGS)


TORCHRUN_SCRIPT = """
import json, sys
import torch.distributed as dist
from snakevi.data import simulate
from snakevi.model import SCVI

adata = simulate(160, 30, seed=1)
SCVI.setup_anndata(adata, batch_key="batch")
model = SCVI(adata, n_latent=4).train(max_epochs=2, accelerator="cpu", batch_size=32, enable_progress_bar=False,
                                      check_val_every_n_epoch=1)
weight = float(model.module.state_dict()["z_encoder.mean_encoder.weight"].sum())
# One file per rank: two processes printing to one pipe can interleave their lines.
rank = model.trainer.dist.rank
with open(f"{sys.argv[1]}/rank{rank}.json", "w") as fh:
    json.dump({"rank": rank, "world": model.trainer.dist.world_size, "weight": weight,
               "epochs": len(model.history_records)}, fh)
"""


def test_under_torchrun_each_process_is_a_rank_of_one_run(tmp_path, adata):
    # torchrun sets RANK/WORLD_SIZE/...: train(devices="auto") joins its group, no spawn.
    script = tmp_path / "train.py"
    script.write_text(TORCHRUN_SCRIPT)
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
                           "--master-port", str(free_port()), str(script), str(tmp_path)],
                          capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in range(2)]
    assert [(r["rank"], r["world"], r["epochs"]) for r in ranks] == [(0, 2, 2), (1, 2, 2)]
    assert ranks[0]["weight"] == ranks[1]["weight"]  # one model on every rank
    # ... the same model SCVI.train(devices=2) makes by starting the processes itself.
    spawned = SCVI(adata, n_latent=4).train(devices=2, **ARGS)
    assert float(spawned.module.state_dict()["z_encoder.mean_encoder.weight"].sum()) == ranks[0]["weight"]
