# Experiment tracking and training precision (train.logger, train.precision): what can be known to
# fail is refused before any job, not when the train job of a long workflow gets there.


def tracker_specs(run):
    """The run's ``train.logger`` as a list of ``{"type": ..., ...}`` mappings."""
    logger = run["train"].get("logger")
    if not logger:
        return []
    items = logger if isinstance(logger, list) else [logger]
    return [{"type": item} if isinstance(item, str) else item for item in items]


def check_trackers_before_any_job():
    """An MLflow tracking server that does not answer, or float16 training without a GPU, stops
    the workflow before any job, naming the run, the key and the fix. In the main process only.
    (A missing tracker package is reported by the train job, before it reads any data: the jobs
    may run in another environment than this one.)
    """
    if not workflow.is_main_process:
        return
    for name, run in config["runs"].items():
        precision = str(run["train"].get("precision", "32"))
        if precision in ("16-mixed", "16") and run["resources"]["gpu"] < 1:
            raise WorkflowError(
                f"runs.{name}.train.precision: {precision!r} needs a CUDA GPU, and runs.{name}.resources.gpu "
                "is 0. Use precision: bf16-mixed (mixed precision on the CPU), or give the run a GPU."
            )
        for spec in tracker_specs(run):
            uri = str(
                spec.get("tracking_uri") or os.environ.get("MLFLOW_TRACKING_URI") or ""
            )
            if spec["type"] == "mlflow" and re.match(r"^https?://", uri, re.IGNORECASE):
                check_tracking_server(f"runs.{name}.train.logger", uri)


def check_tracking_server(where, uri):
    """Ask an MLflow tracking server's /health; a WorkflowError naming ``where`` if it does not answer."""
    import posixpath
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(posixpath.join(uri, "health"), timeout=10):
            pass
    except (urllib.error.URLError, OSError) as err:
        raise WorkflowError(
            f"{where}: the MLflow tracking server {uri} does not answer ({getattr(err, 'reason', err)}). "
            "Start it, check the host and port, or use sqlite:///results/mlflow.db."
        ) from None


check_trackers_before_any_job()
