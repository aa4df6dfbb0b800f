"""Experiment tracking in the workflow: train.logger gives each run one tracked run (TensorBoard and
MLflow on SQLite), the report attaches its figures to it, and adding a tracker reruns nothing."""

from __future__ import annotations

import copy

import pytest
from wf_helpers import planned_jobs, snakemake, write_config

pytest.importorskip("mlflow", reason="the tracking extras (envs/requirements-dev.txt) are not installed")
pytest.importorskip("tensorboard", reason="the tracking extras (envs/requirements-dev.txt) are not installed")

from mlflow.tracking import MlflowClient  # noqa: E402
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402

pytestmark = pytest.mark.slow

LOGGER = ["tensorboard", {"type": "mlflow", "tracking_uri": "sqlite:///results/mlflow.db", "experiment_name": "demo"}]


def _with_logger(config: dict, logger) -> dict:
    config = copy.deepcopy(config)
    config["runs"]["demo"]["train"]["logger"] = logger
    config["runs"]["demo"]["train"]["log_every_n_steps"] = 1
    return config


@pytest.fixture(scope="module")
def tracked_run(tmp_path_factory, demo_config):
    workdir = tmp_path_factory.mktemp("tracked")
    write_config(workdir, _with_logger(demo_config, LOGGER))
    snakemake(workdir, "--cores", "2")
    return workdir


def test_each_run_is_one_tracked_run_with_its_metrics_config_and_artifacts(tracked_run):
    client = MlflowClient(f"sqlite:///{tracked_run}/results/mlflow.db")
    runs = client.search_runs([client.get_experiment_by_name("demo").experiment_id])
    assert [r.info.run_name for r in runs] == ["demo"]
    run = runs[0]
    assert run.info.status == "FINISHED"
    assert [int(m.step) for m in client.get_metric_history(run.info.run_id, "elbo_validation")] == [0, 1]
    assert run.data.params["config.train.max_epochs"] == "2"
    assert {"model", "history.csv", "report"} <= {a.path for a in client.list_artifacts(run.info.run_id)}
    assert "report/loss_elbo.png" in {a.path for a in client.list_artifacts(run.info.run_id, "report")}
    # The artifacts are beside the database, not in the working directory.
    assert (tracked_run / "results" / "mlartifacts").is_dir() and not (tracked_run / "mlruns").exists()

    events = EventAccumulator(str(tracked_run / "results" / "tensorboard" / "demo"))
    events.Reload()
    assert [e.step for e in events.Scalars("elbo_train")] == [0, 1]
    assert "train_loss_step" in events.Tags()["scalars"]


def test_adding_or_removing_a_tracker_reruns_no_job(tracked_run, demo_config):
    write_config(tracked_run, demo_config, name="plain.yaml")
    out = snakemake(tracked_run, "--cores", "1", "-n", "--configfile", str(tracked_run / "plain.yaml"))
    assert planned_jobs(out.stdout) == {}, out.stdout


def test_an_unknown_tracker_is_refused_before_any_job(tmp_path, demo_config):
    write_config(tmp_path, _with_logger(demo_config, "wandb-offline"))
    out = snakemake(tmp_path, "--cores", "1", "-n", check=False)
    assert out.returncode != 0
    assert "Invalid config at runs.demo.train.logger" in out.stdout + out.stderr


def test_an_unreachable_tracking_server_or_float16_without_a_gpu_stops_the_workflow_before_any_job(tmp_path,
                                                                                               demo_config):
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    write_config(tmp_path, _with_logger(demo_config, {"type": "mlflow", "tracking_uri": f"http://127.0.0.1:{port}"}))
    out = snakemake(tmp_path, "--cores", "1", check=False)
    assert out.returncode != 0
    assert f"runs.demo.train.logger: the MLflow tracking server http://127.0.0.1:{port} does not answer" in \
        out.stdout + out.stderr
    assert not (tmp_path / "results").exists()

    half = copy.deepcopy(demo_config)
    half["runs"]["demo"]["train"]["precision"] = "16-mixed"
    write_config(tmp_path, half)
    out = snakemake(tmp_path, "--cores", "1", "-n", check=False)
    assert out.returncode != 0
    assert "runs.demo.train.precision: '16-mixed' needs a CUDA GPU" in out.stdout + out.stderr
