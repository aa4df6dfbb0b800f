"""``MLFlowLogger``: one MLflow run per training run, on any tracking URI.

The tracking URI may be a local folder (``mlruns``, ``file:///...``), a database
(``sqlite:///path/mlflow.db``, or any SQLAlchemy URI MLflow takes) or a tracking server
(``http(s)://host:port``). The run is found again by its ``snakevi.run_key`` tag, so a
resumed job (on this machine or another) continues it instead of opening a new one.
"""

from __future__ import annotations

import logging
import os
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from snakevi.train.loggers.base import EPOCH_METRIC, STEP_METRIC, Logger, TrackerUnavailable, flatten_params

log = logging.getLogger(__name__)

_INSTALL = "pip install 'snakevi[mlflow]' (or: pip install mlflow)"
RUN_KEY_TAG = "snakevi.run_key"
_STATUS = {"success": "FINISHED", "failed": "FAILED", "interrupted": "KILLED"}
_BATCH = 100  # MLflow's limit of params per log_batch call


class MLFlowLogger(Logger):
    """Log metrics, hyperparameters and artifacts to an MLflow run.

    Parameters
    ----------
    tracking_uri
        Where MLflow keeps runs (see the module docstring); ``None``: ``MLFLOW_TRACKING_URI``,
        else ``./mlruns``.
    experiment_name
        The experiment (created when missing).
    run_name
        The run's name; ``None`` takes the name :meth:`start` gets (the workflow's run).
    run_id
        Continue this run rather than find or open one.
    artifact_location
        Where a new experiment keeps artifacts; ``None``: beside a SQLite database
        (``<db folder>/mlartifacts``), else MLflow's default for the URI.
    """

    kind = "mlflow"

    def __init__(self, tracking_uri: str | None = None, experiment_name: str = "snakevi", run_name: str | None = None,
                 run_id: str | None = None, artifact_location: str | None = None) -> None:
        self.tracking_uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or "mlruns"
        self.experiment_name = experiment_name
        self.run_name = run_name
        self.run_id = run_id
        self.artifact_location = artifact_location
        self._client = None

    # -- before training ---------------------------------------------------------------------
    def check(self) -> None:
        _import_mlflow()
        uri = self.tracking_uri
        if uri.startswith(("http://", "https://")):
            _check_server(uri)
        elif "://" not in uri or uri.startswith("file:"):
            _allow_folder_store(uri)
        elif uri.startswith("sqlite:///"):
            # As MLflow makes a missing mlruns folder: sqlite:///results/mlflow.db works in a fresh workdir.
            Path(uri[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
        try:
            self._mlflow_client().search_experiments(max_results=1)
        except Exception as err:  # MLflow raises many types; all mean the same here
            raise TrackerUnavailable(f"MLflow tracking URI {uri} cannot be used: {err}. Check the URI.") from err

    # -- the run -----------------------------------------------------------------------------
    def start(self, *, run_name: str | None = None, run_key: str | None = None, tags: dict | None = None) -> None:
        client = self._mlflow_client()
        experiment_id = self._experiment_id(client)
        tags = {k: str(v) for k, v in (tags or {}).items()}
        if run_key is not None:
            tags[RUN_KEY_TAG] = run_key
        if self.run_id is None and run_key is not None:
            found = client.search_runs([experiment_id], filter_string=f"tags.`{RUN_KEY_TAG}` = '{run_key}'",
                                       order_by=["attributes.start_time DESC"], max_results=1)
            if found:
                self.run_id = found[0].info.run_id
        if self.run_id is None:
            self.run_id = client.create_run(experiment_id, run_name=self.run_name or run_name, tags=tags).info.run_id
        else:
            client.update_run(self.run_id, status="RUNNING")

    def logged_through(self) -> tuple[int, int]:
        client = self._mlflow_client()

        def last(key: str) -> int:
            return max((int(m.step) for m in client.get_metric_history(self.run_id, key)), default=-1)

        return last(EPOCH_METRIC), last(STEP_METRIC)

    def log_hyperparams(self, params: dict[str, Any]) -> None:
        from mlflow.entities import Param
        from mlflow.exceptions import MlflowException

        flat = [Param(k, str(v)) for k, v in sorted(flatten_params(params).items())]
        client = self._mlflow_client()
        for i in range(0, len(flat), _BATCH):
            try:
                client.log_batch(self.run_id, params=flat[i:i + _BATCH])
            except MlflowException as err:
                # A continued run whose params were logged with other values (MLflow keeps the first).
                log.warning("MLflow run %s kept its earlier params: %s", self.run_id, err)

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self._mlflow_client().log_batch(
            self.run_id, metrics=[Metric(key, float(value), now, int(step)) for key, value in metrics.items()]
        )

    def log_artifact(self, path: str | os.PathLike, artifact_path: str | None = None) -> None:
        client = self._mlflow_client()
        if Path(path).is_dir():
            client.log_artifacts(self.run_id, str(path), artifact_path)
        else:
            client.log_artifact(self.run_id, str(path), artifact_path)

    def set_tags(self, tags: dict[str, Any]) -> None:
        for key, value in tags.items():
            self._mlflow_client().set_tag(self.run_id, key, str(value))

    def reopen(self, tags: dict[str, str]) -> bool:
        client = self._mlflow_client()
        found = client.get_experiment_by_name(self.experiment_name)
        if found is None:
            return False
        where = " and ".join(f"tags.`{k}` = '{v}'" for k, v in tags.items())
        runs = client.search_runs([found.experiment_id], filter_string=where,
                                  order_by=["attributes.start_time DESC"], max_results=1)
        if runs:
            self.run_id = runs[0].info.run_id
        return bool(runs)

    def finalize(self, status: str) -> None:
        if self.run_id is not None:
            self._mlflow_client().set_terminated(self.run_id, _STATUS.get(status, "FINISHED"))

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "tracking_uri": self.tracking_uri, "experiment_name": self.experiment_name,
                "run_id": self.run_id}

    # -- helpers -----------------------------------------------------------------------------
    def _mlflow_client(self):
        if self._client is None:
            self._client = _import_mlflow().MlflowClient(tracking_uri=self.tracking_uri)
        return self._client

    def _experiment_id(self, client) -> str:
        from mlflow.exceptions import MlflowException

        found = client.get_experiment_by_name(self.experiment_name)
        if found is not None:
            return found.experiment_id
        location = self.artifact_location
        if location is None and self.tracking_uri.startswith("sqlite:///"):
            location = str(Path(self.tracking_uri[len("sqlite:///"):]).resolve().parent / "mlartifacts")
        try:
            return client.create_experiment(self.experiment_name, artifact_location=location)
        except MlflowException:
            # Another job created it in the meantime.
            found = client.get_experiment_by_name(self.experiment_name)
            if found is None:
                raise
            return found.experiment_id


def _import_mlflow():
    try:
        from mlflow.tracking import MlflowClient  # noqa: F401
        import mlflow.tracking
    except ImportError as err:
        raise TrackerUnavailable(f"The MLflow logger needs the mlflow package: {_INSTALL}.") from err
    return mlflow.tracking


def _allow_folder_store(uri: str) -> None:
    """MLflow 3 refuses a folder (``./mlruns``) unless ``MLFLOW_ALLOW_FILE_STORE`` is set: the user
    asked for one, so allow it in this process (unless they set the variable), and say that MLflow
    keeps that store in maintenance mode."""
    if "MLFLOW_ALLOW_FILE_STORE" not in os.environ:
        os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"
        log.info(
            "MLflow tracking folder %s: MLflow keeps folder stores in maintenance mode; a database "
            "(sqlite:///mlflow.db) gets its newer features.", uri)


def _check_server(uri: str, timeout: float = 10.0) -> None:
    """Ask a tracking server's /health, so an unreachable one fails in seconds, not after MLflow's retries."""
    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout) as response:
            response.read()
    except (urllib.error.URLError, OSError, ValueError) as err:
        raise TrackerUnavailable(
            f"MLflow tracking server {uri} did not answer ({err}). Start it (mlflow server --host ... --port ...), "
            "check the host and port, or use a local URI such as sqlite:///results/mlflow.db."
        ) from err
