"""Kill and resume a 2-process (DDP) train step: SIGKILL of one rank, and SIGTERM to the job as
SLURM sends it, both end after a rerun in the weights and history of an uninterrupted 2-process
run with the same seed (CPU, gloo).

The step runs as `snakevi train --devices 2`: this command starts the two ranks itself
(snakevi.steps.train_launch), relays their logs and forwards signals to them.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest
from rel_helpers import (
    assert_same_result,
    checkpoint_epoch,
    listing,
    killed_at_exit,
    popen_snakevi,
    prepare_resume_data,
    resume_train_args,
    snakevi,
    wait_for_checkpoint,
)

MAX_EPOCHS = 6


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """1000 cells, batch 32 per rank: steps of 64 cells."""
    return prepare_resume_data(tmp_path_factory.mktemp("ddp_resume_data"))


def train_args(prepared, out: Path, checkpoint_every_seconds: str = "0") -> list:
    return resume_train_args(prepared, out, MAX_EPOCHS, checkpoint_every_seconds,
                             "--threads", "2", "--devices", "2", "--launcher", "local")


@pytest.fixture(scope="module")
def reference(prepared, tmp_path_factory):
    """An uninterrupted 2-process run."""
    out = tmp_path_factory.mktemp("ddp_reference")
    proc = snakevi(*train_args(prepared, out), timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def rank_pids(supervisor: int) -> dict[int, int]:
    """``{rank: pid}`` of the training processes the supervisor started (read from their RANK)."""
    out = subprocess.run(["pgrep", "-P", str(supervisor)], capture_output=True, text=True).stdout.split()
    ranks = {}
    for pid in map(int, out):
        try:
            env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except FileNotFoundError:
            continue
        rank = [e.split(b"=", 1)[1] for e in env if e.startswith(b"RANK=")]
        if rank:
            ranks[int(rank[0])] = pid
    return ranks


def rerun_resumes(prepared, out: Path, done: int) -> None:
    proc = snakevi(*train_args(prepared, out), timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"resuming from {out / 'checkpoints' / 'last.ckpt'}" in proc.stderr
    # One line per epoch, from rank 0 only.
    trained = [int(e) for e in re.findall(rf"\[rank 0\] epoch (\d+)/{MAX_EPOCHS} ", proc.stderr)]
    assert trained == list(range(done + 1, MAX_EPOCHS + 1)), trained
    assert "[rank 1] epoch" not in proc.stderr


def test_two_processes_give_the_same_model_twice_and_rank_0_alone_writes(prepared, reference, tmp_path):
    proc = snakevi(*train_args(prepared, tmp_path), timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "training with 2 processes" in proc.stderr
    assert_same_result(tmp_path, reference, MAX_EPOCHS)
    assert "[rank 0] trained 6 epochs" in proc.stderr and "[rank 1] trained" not in proc.stderr


def test_sigkill_of_one_rank_fails_clearly_and_the_rerun_resumes_exactly(prepared, reference, tmp_path):
    with killed_at_exit(popen_snakevi(*train_args(prepared, tmp_path), stderr_path=tmp_path / "killed.txt")) as proc:
        wait_for_checkpoint(proc, tmp_path / "checkpoints" / "last.ckpt")
        os.kill(rank_pids(proc.pid)[1], signal.SIGKILL)
        assert proc.wait(timeout=120) == 1  # no hang: rank 0 is stopped too
    err = (tmp_path / "killed.txt").read_text()
    assert "Training process 1 of 2 was killed by SIGKILL" in err, err[-3000:]
    assert "running the step again resumes from it" in err
    done = checkpoint_epoch(tmp_path)
    assert done < MAX_EPOCHS, f"killed after epoch {done} of {MAX_EPOCHS}: too late to test a resume"
    assert not (tmp_path / "model").exists() and not (tmp_path / "history.csv").exists()
    assert not rank_pids(proc.pid)
    rerun_resumes(prepared, tmp_path, done)
    assert_same_result(tmp_path, reference, MAX_EPOCHS)


@pytest.mark.parametrize("to", ["the job", "every process"])
def test_sigterm_stops_every_rank_after_a_checkpoint_exits_3_and_the_rerun_resumes_exactly(
        prepared, reference, tmp_path, to):
    # No checkpoint is due by time (an hour apart): the one found after SIGTERM is the signal's.
    with killed_at_exit(popen_snakevi(*train_args(prepared, tmp_path, checkpoint_every_seconds="3600"),
                                      stderr_path=tmp_path / "term.txt")) as proc:
        wait_for_checkpoint(proc, tmp_path / "checkpoints" / "history.live.csv")
        assert not (tmp_path / "checkpoints" / "last.ckpt").exists()
        seen = len(pd.read_csv(tmp_path / "checkpoints" / "history.live.csv"))
        # "the job": the supervisor gets it and passes it on (snakemake, a user's kill); "every
        # process": the supervisor and the ranks at once, as SLURM's time limit or scancel does.
        for pid in [proc.pid] + (list(rank_pids(proc.pid).values()) if to == "every process" else []):
            os.kill(pid, signal.SIGTERM)
        assert proc.wait(timeout=120) == 3
    err = (tmp_path / "term.txt").read_text()
    done = checkpoint_epoch(tmp_path)
    assert seen <= done < MAX_EPOCHS
    assert f"received SIGTERM and stopped after epoch {done}" in err and "Traceback" not in err
    assert not (tmp_path / "model").exists() and not (tmp_path / "history.csv").exists()
    assert not [name for name in listing(tmp_path / "checkpoints") if name.endswith(".tmp")]
    rerun_resumes(prepared, tmp_path, done)
    assert_same_result(tmp_path, reference, MAX_EPOCHS)


def test_a_signal_to_one_rank_alone_stops_them_all_at_the_same_epoch(prepared, tmp_path):
    with killed_at_exit(popen_snakevi(*train_args(prepared, tmp_path, checkpoint_every_seconds="3600"),
                                      stderr_path=tmp_path / "term1.txt")) as proc:
        wait_for_checkpoint(proc, tmp_path / "checkpoints" / "history.live.csv")
        deadline = time.monotonic() + 60
        while len(rank_pids(proc.pid)) < 2:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        os.kill(rank_pids(proc.pid)[1], signal.SIGTERM)
        assert proc.wait(timeout=120) == 3
    err = (tmp_path / "term1.txt").read_text()
    done = checkpoint_epoch(tmp_path)
    stops = re.findall(r"\[rank (\d)\] .*received SIGTERM and stopped after epoch (\d+)", err)
    assert sorted(stops) == [("0", str(done)), ("1", str(done))], err[-3000:]


def test_the_torchrun_launcher_gives_the_same_model_as_the_local_one(prepared, reference, tmp_path):
    args = train_args(prepared, tmp_path)
    args[args.index("local")] = "torchrun"
    proc = snakevi(*args, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "launcher torchrun" in proc.stderr
    assert_same_result(tmp_path, reference, MAX_EPOCHS)
