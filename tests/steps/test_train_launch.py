"""The train step's launch of several processes: what each rank is given, which launcher, refusals.

The processes themselves run in tests/reliability/test_ddp_resume.py, tests/workflow/test_ddp_workflow.py
and tests/workflow/test_slurm.py; these tests check the arguments and decisions, without training.
"""

from __future__ import annotations

import inspect
import json

import pytest

from snakevi.cli import build_parser
from snakevi.steps._io import StepError
from snakevi.steps.train import _processes, _rank_arguments, train
from snakevi.steps.train_launch import choose_launcher, rank_commands

#: train() arguments a rank does not take from the supervisor: it gets its share of the threads,
#: no progress bar, and is started by the launcher (it does not start one).
NOT_FORWARDED = {"threads", "enable_progress_bar", "launcher"}
#: train()'s argument -> the command's destination.
CLI_NAME = {"prepared_dir": "prepared", "registry_json": "registry", "model_out": "model", "history_out": "history",
            "latent_out": "latent", "model_params": "model_params", "train_params": "train_params"}


def test_every_rank_gets_every_argument_of_the_step(tmp_path):
    given = {
        "prepared_dir": tmp_path / "prep", "registry_json": tmp_path / "reg.json", "model_out": tmp_path / "m",
        "history_out": tmp_path / "h.csv", "latent_out": tmp_path / "l.npy", "model_class": "linear_scvi",
        "checkpoint_dir": tmp_path / "ck", "checkpoint_store": "s3://lab/run/checkpoints",
        "model_params": {"n_latent": 3}, "train_params": {"plan": {"lr": 0.01}},
        "seed": 7, "accelerator": "cpu", "checkpoint_every_seconds": 12.5, "devices": 2, "nodes": 1,
        "logger": {"type": "mlflow", "tracking_uri": "sqlite:///t.db"}, "log_every_n_steps": 5, "run_name": "r",
    }
    params = set(inspect.signature(train).parameters) - NOT_FORWARDED
    assert params == set(given), "a new train() argument must reach the ranks: add it to _rank_arguments"
    parsed = vars(build_parser().parse_args(["train", *_rank_arguments(given)]))
    for name, value in given.items():
        got = parsed[CLI_NAME.get(name, name)]
        want = str(value.resolve()) if hasattr(value, "resolve") else value
        assert got == want, name
    assert json.dumps(parsed["train_params"]) == json.dumps(given["train_params"])


def test_auto_is_local_outside_slurm_and_srun_in_a_slurm_job(monkeypatch, tmp_path):
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    assert choose_launcher("auto", 1) == "local"
    fake_srun = tmp_path / "srun"
    fake_srun.write_text("#!/bin/sh\n")
    fake_srun.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:/usr/bin:/bin")
    monkeypatch.setenv("SLURM_JOB_ID", "42")
    assert choose_launcher("auto", 2) == "srun"


def test_several_nodes_need_srun_and_an_unknown_launcher_is_named(monkeypatch):
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    with pytest.raises(StepError, match=r"train.nodes=2 needs the srun launcher .* not in a SLURM job"):
        choose_launcher("auto", 2)
    with pytest.raises(StepError, match=r"launcher='mpirun': expected one of \['auto', 'local', 'srun', 'torchrun'\]"):
        choose_launcher("mpirun", 1)


def test_the_srun_line_asks_for_one_task_per_device_on_every_node():
    [(argv, env)] = rank_commands(["--prepared", "p"], devices=4, nodes=3, launcher="srun", threads_per_rank=8)
    assert argv[:8] == ["srun", "--ntasks=12", "--nodes=3", "--ntasks-per-node=4", "--cpus-per-task=8",
                        "--kill-on-bad-exit=1", "--label", "--overlap"]
    assert argv[-6:] == ["snakevi", "train", "--prepared", "p", "--threads", "8"]
    assert env["LOCAL_WORLD_SIZE"] == "4" and env["MASTER_ADDR"] and int(env["MASTER_PORT"]) > 0


def test_local_ranks_get_torchruns_environment():
    commands = rank_commands([], devices=2, nodes=1, launcher="local", threads_per_rank=1)
    envs = [env for _, env in commands]
    assert [e["RANK"] for e in envs] == ["0", "1"] and {e["WORLD_SIZE"] for e in envs} == {"2"}
    assert len({e["MASTER_PORT"] for e in envs}) == 1 and envs[0]["MASTER_ADDR"] == "127.0.0.1"


def test_a_launcher_with_another_number_of_processes_is_refused(monkeypatch):
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "3")
    with pytest.raises(StepError, match=r"devices=2 x nodes=1 = 2 processes, but the launcher started 3"):
        _processes(2, 1)
    assert _processes(None, 1) == 3  # left out: as many as started
    monkeypatch.delenv("WORLD_SIZE")
    assert _processes(2, 1) is None  # not launched: this process starts them
    assert _processes(None, 1) == 1
    with pytest.raises(StepError, match=r"devices=0: expected a whole number >= 1"):
        _processes(0, 1)


def test_more_cpu_processes_than_cores_are_refused_before_any_starts(tiny_registered, tmp_path):
    import os

    _, registry, prepared = tiny_registered
    many = (os.cpu_count() or 1) + 1
    with pytest.raises(StepError, match=rf"devices={many}: more training processes than CPU cores"):
        train(prepared, registry, tmp_path / "m", tmp_path / "h.csv", devices=many, accelerator="cpu",
              launcher="local")
    assert not (tmp_path / "m").exists() and not (tmp_path / "checkpoints").exists()
