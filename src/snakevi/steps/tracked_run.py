"""The steps' side of experiment tracking: attach a run's outputs to its tracked run.

The train step logs the metrics while training (:mod:`snakevi.train.callbacks.experiment_tracking`);
once its outputs are written it attaches the model folder and history.csv and tags the tracked
run with the SHA-256 of that history.csv. The report step, which runs later and perhaps
elsewhere, finds the run again by that tag (the history it plots is its input) and attaches the
report's figures. Trackers without artifacts (TensorBoard) ignore both. A tracker that fails
here is warned about: the outputs are written, and the job must not fail (and lose them) for it.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from snakevi._digest import sha256_file

log = logging.getLogger(__name__)

HISTORY_TAG = "snakevi.history_sha256"


def attach_outputs(trackers: list, model_out: str | os.PathLike, history_out: str | os.PathLike) -> None:
    """Attach the model folder and history.csv to each tracked run and tag it with the history's SHA-256."""
    sha = sha256_file(history_out)
    for tracker in trackers:
        try:
            tracker.log_artifact(model_out, "model")
            tracker.log_artifact(history_out)
            tracker.set_tags({HISTORY_TAG: sha})
        except Exception as err:  # noqa: BLE001 - see the module docstring
            log.warning("%s could not attach the outputs to its run: %s", type(tracker).__name__, err)


def attach_report(logger_spec, history_csv: str | os.PathLike, files: list[str | os.PathLike]) -> None:
    """Attach the report's ``files`` to the tracked run whose history.csv is ``history_csv``."""
    if not logger_spec:
        return
    from snakevi.train.loggers import make_loggers

    sha = sha256_file(history_csv)
    for tracker in make_loggers(logger_spec):
        try:
            if not tracker.reopen({HISTORY_TAG: sha}):
                if tracker.kind != "tensorboard":
                    log.warning("%s: no tracked run has this history.csv (%s); the figures are not attached.",
                                type(tracker).__name__, history_csv)
                continue
            for path in files:
                tracker.log_artifact(path, "report")
            log.info("report figures attached to %s", tracker.describe())
        except Exception as err:  # noqa: BLE001 - see the module docstring
            log.warning("%s could not attach the report: %s", type(tracker).__name__, err)
