"""Kill and resume the train step: SIGKILL mid-epoch and SIGTERM both end, after a rerun, in the
weights and history of an uninterrupted run with the same seed.

The step runs as the `snakevi train` command. The killed run is stopped as soon as its first
checkpoint exists (epochs here take a good fraction of a second, so the kill lands in the middle
of the next epoch); the rerun must say it resumes and end bit-identical to a run never stopped.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
from pathlib import Path

import pandas as pd
import pytest
from rel_helpers import (
    assert_same_result,
    checkpoint_epoch,
    listing,
    popen_snakevi,
    prepare_resume_data,
    resume_train_args,
    snakevi,
    wait_for_checkpoint,
)

MAX_EPOCHS = 6


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    return prepare_resume_data(tmp_path_factory.mktemp("resume_data"))


def train_args(prepared, out: Path, checkpoint_every_seconds: str = "0") -> list:
    return resume_train_args(prepared, out, MAX_EPOCHS, checkpoint_every_seconds, "--threads", "1")


@pytest.fixture(scope="module")
def reference(prepared, tmp_path_factory):
    """An uninterrupted run, started in the background (it runs while the others are killed)."""
    out = tmp_path_factory.mktemp("reference")
    proc = popen_snakevi(*train_args(prepared, out), stderr_path=out / "stderr.txt")

    def wait() -> Path:
        assert proc.wait(timeout=600) == 0, (out / "stderr.txt").read_text()[-3000:]
        return out

    yield wait
    if proc.poll() is None:
        proc.kill()


def rerun_resumes(prepared, out: Path, done: int) -> subprocess.CompletedProcess:
    """Rerun train; it must say it resumes and train exactly epochs ``done + 1 .. MAX_EPOCHS``."""
    proc = snakevi(*train_args(prepared, out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"resuming from {out / 'checkpoints' / 'last.ckpt'}" in proc.stderr
    trained = [int(e) for e in re.findall(rf"epoch (\d+)/{MAX_EPOCHS} ", proc.stderr)]
    assert trained == list(range(done + 1, MAX_EPOCHS + 1)), trained
    return proc


def test_sigkill_mid_epoch_then_rerun_resumes_exactly(prepared, reference, tmp_path):
    proc = popen_snakevi(*train_args(prepared, tmp_path), stderr_path=tmp_path / "killed.txt")
    wait_for_checkpoint(proc, tmp_path / "checkpoints" / "last.ckpt")
    os.killpg(proc.pid, signal.SIGKILL)
    assert proc.wait(timeout=60) == -signal.SIGKILL
    done = checkpoint_epoch(tmp_path)  # >= 1: the file exists only after an epoch
    # The guard that can fail: a kill landing after the last epoch's save would leave nothing to resume.
    assert done < MAX_EPOCHS, f"killed after epoch {done} of {MAX_EPOCHS}: too late to test a resume"
    # Killed before the end: no model, no history, nothing that looks finished.
    assert not (tmp_path / "model").exists() and not (tmp_path / "history.csv").exists()
    rerun_resumes(prepared, tmp_path, done)
    assert_same_result(tmp_path, reference(), MAX_EPOCHS)


def test_sigterm_writes_a_checkpoint_exits_3_and_the_rerun_resumes_exactly(prepared, reference, tmp_path):
    # Checkpoints an hour apart: none is due by time, so the one found after SIGTERM was written
    # because of the signal. The rerun checkpoints after every epoch and must still end the same.
    proc = popen_snakevi(*train_args(prepared, tmp_path, checkpoint_every_seconds="3600"),
                         stderr_path=tmp_path / "term.txt")
    wait_for_checkpoint(proc, tmp_path / "checkpoints" / "history.live.csv")
    assert not (tmp_path / "checkpoints" / "last.ckpt").exists()
    seen = len(pd.read_csv(tmp_path / "checkpoints" / "history.live.csv"))
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) == 3
    err = (tmp_path / "term.txt").read_text()
    done = checkpoint_epoch(tmp_path)
    # It finished the epoch it was in and saved it before exiting.
    assert seen <= done < MAX_EPOCHS
    assert f"received SIGTERM and stopped after epoch {done}" in err and "Traceback" not in err
    assert "to resume from it" in err
    assert not (tmp_path / "model").exists() and not (tmp_path / "history.csv").exists()
    assert len(pd.read_csv(tmp_path / "checkpoints" / "history.live.csv")) == done
    assert not [name for name in listing(tmp_path / "checkpoints") if name.endswith(".tmp")]
    rerun_resumes(prepared, tmp_path, done)
    assert_same_result(tmp_path, reference(), MAX_EPOCHS)
