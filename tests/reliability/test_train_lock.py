"""Two trainers on one checkpoint folder: the second stops at once, naming the first; nothing is overwritten.

What happens after `snakemake` itself is SIGKILLed: its train job goes on, and `--unlock` +
`--rerun-incomplete` start a second train job on the same run. The first trainer here is a real
`snakevi train` of many epochs, killed at the end of the test; once it is killed (the kernel
drops its lock), a new trainer on the folder runs normally.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import time
from pathlib import Path

import pytest
from rel_helpers import MODEL, listing, popen_snakevi, sha256, snakevi, tiny_adata


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    from snakevi.steps import prepare, register

    d = tmp_path_factory.mktemp("lock_data")
    tiny_adata().write_h5ad(d / "data.h5ad")
    register(d / "data.h5ad", d / "registry.json", batch_key="batch")
    prepare(d / "data.h5ad", d / "registry.json", d / "prepared", batch_size=32)
    return d / "registry.json", d / "prepared"


def train_args(prepared, out: Path, *, max_epochs: int, seed: int = 0) -> list:
    registry, prep = prepared
    return ["train", "--prepared", prep, "--registry", registry, "--model", out / "model",
            "--history", out / "history.csv", "--latent", out / "latent.npy", "--checkpoint-dir",
            out / "checkpoints", "--checkpoint-every-seconds", "0", "--model-params", json.dumps(MODEL),
            "--train-params", json.dumps({"max_epochs": max_epochs}), "--seed", str(seed), "--accelerator", "cpu",
            "--threads", "1"]


def test_a_second_trainer_on_the_same_checkpoints_stops_at_once_and_overwrites_nothing(prepared, tmp_path):
    first = popen_snakevi(*train_args(prepared, tmp_path, max_epochs=100_000), stderr_path=tmp_path / "first.txt")
    try:
        ckpt = tmp_path / "checkpoints"
        deadline = time.monotonic() + 120
        while not (ckpt / "last.ckpt").is_file():
            assert first.poll() is None, (tmp_path / "first.txt").read_text()[-3000:]
            assert time.monotonic() < deadline, "the first trainer wrote no checkpoint in 120 s"
            time.sleep(0.05)
        stamp = sha256(ckpt / "fingerprint.json")
        # The same run (it would resume from, and write to, the first one's checkpoint) and another
        # run (it would move the first one's folder to checkpoints.stale and start afresh).
        for seed in (0, 1):
            started = time.monotonic()
            second = snakevi(*train_args(prepared, tmp_path, max_epochs=2, seed=seed))
            took = time.monotonic() - started
            err = second.stderr
            assert second.returncode == 1, f"exit {second.returncode}\n{err[-3000:]}"
            assert "Traceback" not in err, err[-3000:]
            assert str(ckpt) in err and f"process {first.pid} on {socket.gethostname()}" in err, err[-3000:]
            assert "another trainer" in err.lower(), err[-3000:]
            assert "resuming" not in err and "epoch 1/2" not in err, "the second trainer trained"
            assert took < 60, f"the second trainer took {took:.0f} s to stop"
            assert first.poll() is None, "the first trainer died"
            assert sha256(ckpt / "fingerprint.json") == stamp, "the first trainer's checkpoint folder was rewritten"
            assert not (tmp_path / "checkpoints.stale").exists(), "the first trainer's folder was moved aside"
            for out in ("model", "history.csv", "latent.npy"):
                assert not (tmp_path / out).exists(), f"the second trainer wrote {out}"
        # The first trainer goes on checkpointing in its folder.
        seen = (ckpt / "last.ckpt").stat().st_mtime_ns
        deadline = time.monotonic() + 60
        while (ckpt / "last.ckpt").stat().st_mtime_ns == seen:
            assert time.monotonic() < deadline, "the first trainer stopped checkpointing"
            time.sleep(0.05)
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(timeout=60)
    # Killed, the first holds no lock: a new trainer runs (here another run, so the folder goes to .stale).
    third = snakevi(*train_args(prepared, tmp_path, max_epochs=1, seed=2))
    assert third.returncode == 0, third.stderr[-3000:]
    assert (tmp_path / "checkpoints.stale").is_dir()
    assert not [name for name in listing(tmp_path) if "lock" in name], listing(tmp_path)
