"""Decisions under DDP: the LR scheduler and the NaN guard decide alike on every rank (CPU, gloo, 2 ranks).

Early stopping is in test_ddp.py. The schedule must equal one process's with the doubled batch
(the metric it watches is reduced over the ranks first); a non-finite loss on one rank's shard
must stop every rank at the same step, with no rank left waiting in a collective.
"""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist
from ddp_workers import fit_on_cells

from snakevi.train import Callback, LearningRateMonitor
from snakevi.train.callbacks.nan_guard import NonFiniteLossError
from snakevi.train.launch import spawn

#: Halve the learning rate after two epochs without a better validation ELBO: in 10 epochs of this
#: toy (whose ELBO worsens from epoch 5 at lr 0.01) it halves twice, at epochs the metric decides.
PLATEAU = {"reduce_lr_on_plateau": True, "lr_patience": 1, "lr_factor": 0.5, "lr_threshold": 0.1,
           "lr_scheduler_metric": "elbo_validation"}


def fit_with_plateau(batch_size: int) -> dict:
    return fit_on_cells(batch_size, 10, plan_kwargs=PLATEAU, callbacks=[LearningRateMonitor()])


def test_lr_on_plateau_takes_one_process_schedule_on_every_rank():
    one = fit_with_plateau(16)
    two = spawn(fit_with_plateau, 2, (8,), threads=1)
    lrs = [row["lr-Adam"] for row in one["history"]]
    assert len(set(lrs)) > 2, f"the schedule must change the rate a few times to test anything: {lrs}"
    for view in two["ranks"]:
        assert [row["lr-Adam"] for row in view["history"]] == lrs
        # ...decided on the metric of all the cells, the one a single process sees.
        for row_one, row in zip(one["history"], view["history"]):
            assert row["elbo_validation"] == pytest.approx(row_one["elbo_validation"], rel=1e-5)


class PoisonOneRank(Callback):
    """At the start of an epoch, make one rank's decoder weights NaN (bad data on its shard would do the same)."""

    def __init__(self, rank: int, epoch: int):
        self.rank, self.epoch = rank, epoch

    def on_train_epoch_start(self, trainer, plan):
        if trainer.dist.rank == self.rank and trainer.current_epoch == self.epoch:
            with torch.no_grad():
                plan.module.decoder.weight.fill_(float("nan"))


def fit_until_nonfinite() -> list[dict]:
    """Every rank's error (message and step), gathered after they all stopped."""
    try:
        fit_on_cells(8, 6, callbacks=[PoisonOneRank(rank=1, epoch=2)])
        mine = {"error": None}
    except NonFiniteLossError as err:
        mine = {"error": str(err)}
    # Reached only if this rank stopped at the step the other one did (else the gather waits on a
    # rank still training, and spawn's timeout fails the test).
    views: list = [None] * dist.get_world_size()
    dist.all_gather_object(views, mine)
    return views


def test_a_non_finite_loss_on_one_rank_stops_every_rank_at_the_same_step():
    views = spawn(fit_until_nonfinite, 2, (), threads=1)
    errors = [view["error"] for view in views]
    assert all(errors), errors  # both raised, neither trained on
    steps = {error.split("(global step ")[1].split(")")[0] for error in errors}
    assert steps == {"10"}, errors  # epoch 2's first step (5 steps per epoch)
    assert "Non-finite training loss (train_loss)" in errors[1]  # the poisoned rank's own loss
