"""The train and report steps with experiment trackers: an MLflow tracking server on the loopback,
a job killed and resumed continuing one tracked run, and the refusals before anything is written."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from snakevi.steps import StepError, report, train

pytest.importorskip("mlflow", reason="the tracking extras (envs/requirements-dev.txt) are not installed")
from mlflow.tracking import MlflowClient  # noqa: E402

sys.path.insert(0, str(Path(__file__).parents[1]))
from s3_server import free_port  # noqa: E402

MODEL = {"n_latent": 3, "n_hidden": 16}


@contextlib.contextmanager
def mlflow_server(folder: Path):
    """``mlflow server`` on 127.0.0.1 (a free port, SQLite backend, proxied artifacts); stopped after."""
    port = free_port()
    uri = f"http://127.0.0.1:{port}"
    exe = Path(sys.executable).with_name("mlflow")
    cmd = [str(exe), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
           "--backend-store-uri", f"sqlite:///{folder}/mlflow.db", "--artifacts-destination", str(folder / "artifacts")]
    # No job runner (huey consumers): the tracking API is all these tests use.
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    log = open(folder / "server.log", "w")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(uri + "/health", timeout=2):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"mlflow server did not start: {(folder / 'server.log').read_text()[-2000:]}")
                time.sleep(0.3)
        yield uri
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)  # the server and its uvicorn worker
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with mlflow_server(tmp_path_factory.mktemp("mlflow")) as uri:
        yield uri


def _runs(uri: str, experiment: str):
    client = MlflowClient(uri)
    found = client.get_experiment_by_name(experiment)
    return client, ([] if found is None else client.search_runs([found.experiment_id]))


def _train_command(prepared, registry_json, out: Path, logger_json: str | None, epochs: int) -> list[str]:
    cmd = [str(Path(sys.executable).with_name("snakevi")), "train", "--prepared", str(prepared),
           "--registry", str(registry_json), "--model", str(out / "model"), "--history", str(out / "history.csv"),
           "--latent", str(out / "latent.npy"),
           "--model-params", '{"n_latent": 3, "n_hidden": 16}',
           "--train-params", f'{{"max_epochs": {epochs}, "check_val_every_n_epoch": 1}}', "--log-every-n-steps", "2",
           "--seed", "3", "--accelerator", "cpu", "--threads", "1", "--checkpoint-every-seconds", "0"]
    return cmd + (["--logger", logger_json, "--run-name", "pbmc-run"] if logger_json else [])


def test_a_killed_train_job_resumed_continues_one_tracked_run_on_a_tracking_server(server, tiny_registered, tmp_path):
    _, registry_json, prepared = tiny_registered
    logger = f'{{"type": "mlflow", "tracking_uri": "{server}", "experiment_name": "killed"}}'
    epochs = 60
    out = tmp_path / "run"
    job = subprocess.Popen(_train_command(prepared, registry_json, out, logger, epochs), start_new_session=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client, tracked = None, []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and job.poll() is None:
        client, runs = _runs(server, "killed")
        tracked = client.get_metric_history(runs[0].info.run_id, "epoch") if runs else []
        if len(tracked) >= 10:
            break
        time.sleep(0.2)
    assert job.poll() is None, "the job ended before it could be killed: make it longer"
    os.killpg(job.pid, signal.SIGKILL)
    job.wait()
    assert not (out / "history.csv").exists()
    assert (out / "checkpoints" / "last.ckpt").is_file()

    done = subprocess.run(_train_command(prepared, registry_json, out, logger, epochs), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "resuming from" in done.stderr
    client, runs = _runs(server, "killed")
    assert len(runs) == 1, "the resumed job opened a second tracked run"
    run = runs[0]
    assert run.info.status == "FINISHED" and run.info.run_name == "pbmc-run"
    epochs_logged = sorted(int(m.step) for m in client.get_metric_history(run.info.run_id, "elbo_validation"))
    assert epochs_logged == list(range(epochs)), "an epoch is missing or logged twice"
    steps = [int(m.step) for m in client.get_metric_history(run.info.run_id, "train_loss_step")]
    assert len(steps) == len(set(steps))
    assert run.data.params["config.model.n_latent"] == "3" and run.data.params["config.seed"] == "3"
    assert "data.registry_fingerprint" in run.data.params and run.data.tags["snakevi.run"] == "pbmc-run"
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"model", "history.csv"} <= artifacts
    # The resumed job's result is that of a job that was never killed (and never tracked).
    whole = tmp_path / "whole"
    subprocess.run(_train_command(prepared, registry_json, whole, None, epochs), check=True, capture_output=True)
    assert (out / "history.csv").read_text() == (whole / "history.csv").read_text()
    history_rows = (out / "history.csv").read_text().splitlines()[1:]
    last_elbo = float(client.get_metric_history(run.info.run_id, "elbo_validation")[-1].value)
    header = (out / "history.csv").read_text().splitlines()[0].split(",")
    assert last_elbo == pytest.approx(float(history_rows[-1].split(",")[header.index("elbo_validation")]))

    # The report step finds the tracked run by its history and attaches the figures.
    report(out / "history.csv", out / "latent.npy", prepared, registry_json, tmp_path / "report", run="pbmc-run",
           logger=json.loads(logger))
    files = {a.path for a in client.list_artifacts(run.info.run_id, "report")}
    assert {"report/loss_elbo.png", "report/latent_batch.png", "report/metrics.json"} <= files


@pytest.mark.parametrize("logger, match", [
    (lambda tmp: {"type": "mlflow", "tracking_uri": f"http://127.0.0.1:{free_port()}"}, "did not answer"),
    (lambda tmp: {"type": "neptune"}, "logger type 'neptune' is unknown"),
    (lambda tmp: {"type": "mlflow", "tracking_url": "x"}, "unexpected keyword argument 'tracking_url'"),
    (lambda tmp: "comet", "logger type 'comet' is unknown"),
])
def test_a_tracker_that_cannot_be_used_stops_the_step_before_anything_is_written(tiny_registered, tmp_path,
                                                                                 logger, match):
    _, registry_json, prepared = tiny_registered
    out = tmp_path / "out"
    with pytest.raises(StepError, match=f"train.logger: .*{match}"):
        train(prepared, registry_json, out / "model", out / "history.csv", model_params=MODEL,
              train_params={"max_epochs": 1}, accelerator="cpu", logger=logger(tmp_path))
    assert not out.exists()


def test_float16_on_the_cpu_stops_the_step_before_anything_is_written(tiny_registered, tmp_path):
    _, registry_json, prepared = tiny_registered
    out = tmp_path / "out"
    with pytest.raises(StepError, match="train.precision='16-mixed' needs a CUDA GPU; .* Use precision='bf16-mixed'"):
        train(prepared, registry_json, out / "model", out / "history.csv", model_params=MODEL,
              train_params={"max_epochs": 1, "precision": "16-mixed"}, accelerator="cpu")
    assert not out.exists()


def test_tensorboard_from_the_step_goes_beside_the_run_folder_named_after_the_run(tiny_registered, tmp_path):
    pytest.importorskip("tensorboard")
    _, registry_json, prepared = tiny_registered
    out = tmp_path / "results" / "myrun"
    train(prepared, registry_json, out / "model", out / "history.csv", model_params=MODEL,
          train_params={"max_epochs": 2, "check_val_every_n_epoch": 1}, accelerator="cpu", logger="tensorboard")
    events = list((tmp_path / "results" / "tensorboard" / "myrun").glob("events.out.tfevents.*"))
    assert events and (tmp_path / "results" / "tensorboard" / "myrun" / "hparams.yaml").is_file()
