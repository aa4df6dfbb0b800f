"""Multi-process (DDP) training on the CPU with gloo: 2 ranks started by snakevi.train.launch.spawn.

Each rank is a fresh interpreter (a few seconds to import torch), so the tests keep to a few
runs of a small module (tests/train/ddp_workers.py) on simulated counts.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from ddp_workers import fit_kwargs, fit_on_cells

from snakevi.train.launch import spawn


def _close(a: dict, b: dict, **tol) -> None:
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key].double(), b[key].double(), msg=lambda m, k=key: f"{k}: {m}", **tol)


def _assert_two_ranks_match_one_process(one: dict, two: dict, epochs: int, steps: int, rel: float = 1e-5) -> None:
    assert two["world_size"] == 2 and one["world_size"] == 1
    assert len(two["history"]) == len(one["history"]) == epochs
    for row_one, row_two in zip(one["history"], two["history"]):
        assert row_one.keys() == row_two.keys()
        for key in row_one:
            assert row_two[key] == pytest.approx(row_one[key], rel=rel, abs=1e-6), key
    _close(one["weights"], two["weights"], rtol=1e-4, atol=1e-5)
    # Every rank holds the same history and the same weights (one model, written once).
    rank0, rank1 = two["ranks"]
    assert rank0["history"] == rank1["history"] and rank0["global_step"] == rank1["global_step"] == epochs * steps
    _close(rank0["weights"], rank1["weights"], rtol=0, atol=0)


def test_two_ranks_take_the_steps_of_one_process_with_the_doubled_batch():
    # Deterministic forward (no sampling, no dropout): the 2-rank run is the 1-process run with
    # batch 16 up to float rounding, BatchNorm over the whole minibatch included.
    one = fit_on_cells(batch_size=16, max_epochs=4)
    two = spawn(fit_on_cells, 2, (8, 4), threads=1)
    _assert_two_ranks_match_one_process(one, two, epochs=4, steps=5)


def test_adversarial_plan_under_two_ranks_is_one_process_with_the_doubled_batch():
    # The batch classifier (BatchNorm, its own Adam) starts from rank 0's weights, its gradients
    # are averaged after its own backward, and its fool loss is in train_loss: all as one process.
    one = fit_on_cells(batch_size=16, max_epochs=3, plan="adversarial")
    two = spawn(fit_kwargs, 2, ({"batch_size": 8, "max_epochs": 3, "plan": "adversarial"},), threads=1)
    assert any(key.startswith("aux0.") for key in two["weights"])
    _assert_two_ranks_match_one_process(one, two, epochs=3, steps=5)


def test_semisupervised_plan_under_two_ranks_is_one_process_with_the_doubled_batch():
    # 12 labelled cells per class drawn each epoch (36, cycled 3 times in 5 steps), shared between
    # the ranks; 17 validation cells: the last validation minibatch (1 cell) reaches rank 0 only,
    # which then takes the whole labelled minibatch. The classification metrics (not sums over
    # cells) come from statistics summed over the ranks, minibatch by minibatch. Float rounding,
    # amplified by the classification loss, reaches 1.4e-5 (kl_local_validation) in 3 epochs;
    # leaving rank 1's share of that last labelled minibatch out shows at 5e-4.
    common = {"max_epochs": 3, "plan": "semi", "n_samples_per_label": 12, "n_cells": 97}
    one = fit_on_cells(batch_size=16, **common)
    two = spawn(fit_kwargs, 2, ({"batch_size": 8, **common},), threads=1)
    assert {"train_accuracy", "validation_calibration_error", "validation_f1_score"} <= one["history"][0].keys()
    _assert_two_ranks_match_one_process(one, two, epochs=3, steps=5, rel=1e-4)


def test_early_stopping_stops_every_rank_at_the_epoch_one_process_stops():
    stop = {"monitor": "elbo_validation", "patience": 1, "min_delta": 10.0}  # stops after two epochs
    one = fit_on_cells(batch_size=16, max_epochs=20, early_stopping=stop)
    two = spawn(fit_kwargs, 2, ({"batch_size": 8, "max_epochs": 20, "early_stopping": stop},), threads=1)
    epochs = [view["epochs"] for view in two["ranks"]]
    assert epochs == [one["ranks"][0]["epochs"]] * 2 and epochs[0] < 20


def test_resume_under_ddp_is_bit_identical_to_an_uninterrupted_run(tmp_path):
    # Sampling and dropout draw from each rank's RNG: the checkpoint must hold every rank's state.
    common = {"batch_size": 8, "noise": True, "dropout": 0.2}
    full = spawn(fit_kwargs, 2, ({**common, "max_epochs": 4, "checkpoint_dir": str(tmp_path / "a")},), threads=1)
    spawn(fit_kwargs, 2, ({**common, "max_epochs": 2, "checkpoint_dir": str(tmp_path / "b")},), threads=1)
    resumed = spawn(fit_kwargs, 2, ({**common, "max_epochs": 4, "checkpoint_dir": str(tmp_path / "b"),
                                      "ckpt_path": str(tmp_path / "b" / "last.ckpt")},), threads=1)
    _close(full["weights"], resumed["weights"], rtol=0, atol=0)
    assert full["history"] == resumed["history"]
    # Resuming with another number of processes cannot be exact, and says so.
    with pytest.raises(ValueError, match="written by a run of 2 process"):
        fit_on_cells(**common, max_epochs=4, ckpt_path=str(tmp_path / "b" / "last.ckpt"))


def test_only_rank_zero_logs_to_the_trackers(tmp_path):
    pytest.importorskip("mlflow", reason="the tracking extras (envs/requirements-dev.txt) are not installed")
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    logger = [{"type": "mlflow", "tracking_uri": uri}, {"type": "tensorboard", "save_dir": str(tmp_path / "tb")}]
    two = spawn(fit_kwargs, 2, ({"batch_size": 8, "max_epochs": 2, "logger": logger},), threads=1)
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("snakevi").experiment_id])
    assert len(runs) == 1
    assert sorted(int(m.step) for m in client.get_metric_history(runs[0].info.run_id, "elbo_train")) == [0, 1]
    assert sorted(int(m.step) for m in client.get_metric_history(runs[0].info.run_id, "train_loss_step")) == \
        list(range(1, 11))  # 5 steps per epoch, each logged once
    assert [float(m.value) for m in sorted(client.get_metric_history(runs[0].info.run_id, "elbo_train"),
                                          key=lambda m: m.step)] == pytest.approx(
        [row["elbo_train"] for row in two["history"]])
    assert len(list((tmp_path / "tb" / "ddp").glob("events.out.tfevents.*"))) == 1


def test_a_rank_that_raises_ends_the_run_with_its_error_and_no_rank_hangs():
    # Rank 1 fails at epoch 2 while rank 0 waits in a collective: spawn stops rank 0 and raises.
    code = textwrap.dedent("""
        import sys
        sys.path.insert(0, "tests/train")
        from ddp_workers import fit_kwargs
        from snakevi.train.launch import spawn
        spawn(fit_kwargs, 2, ({"batch_size": 8, "max_epochs": 6, "raise_at": (1, 2)},), threads=1)
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180)
    assert proc.returncode != 0
    assert "rank 1 failed at epoch 2" in proc.stderr, proc.stderr[-3000:]


def test_shards_are_disjoint_and_cover_the_epoch():
    from snakevi.data.loader import EpochOrder

    whole = EpochOrder(10, batch_size=4, shuffle=True, seed=5)
    shards = []
    for rank in range(2):
        order = EpochOrder(10, batch_size=2, shuffle=True, seed=5)
        order.shard(rank, 2, pad=True)
        shards.append(order.order())
    assert sorted(np.concatenate(shards).tolist()) == sorted(whole.order().tolist())
    # Minibatch k of both ranks together is minibatch k of one process with twice the batch.
    assert set(shards[0][:2]) | set(shards[1][:2]) == set(whole.order()[:4])
    padded = EpochOrder(5, batch_size=2)
    padded.shard(1, 2, pad=True)
    assert len(padded.order()) == 3 and len(padded) == 2
    with pytest.raises(ValueError, match="1 training cell"):
        EpochOrder(1).shard(0, 2, pad=True)
