"""``Logger``: what the trainer needs of an experiment tracker (TensorBoard, MLflow, W&B).

A logger is driven by :class:`~snakevi.train.callbacks.TrackingCallback`, on the main process
only. Two step axes are used, as scvi-tools' users read them: epoch metrics (every history
column, scvi-tools' names, plus ``epoch``) at step = epoch, and step metrics
(``train_loss_step`` every ``log_every_n_steps`` optimizer steps) at step = global step.

A resumed fit continues the tracked run it belongs to (``start(run_key=...)``) and asks it what
it holds already (:meth:`Logger.logged_through`), so no epoch or step is written twice, even
those logged after the checkpoint that was resumed from.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

#: The metric that records which epochs a tracked run holds (Lightning logs it too).
EPOCH_METRIC = "epoch"
#: The step-level training loss (Lightning's name for an ``on_step`` and ``on_epoch`` metric).
STEP_METRIC = "train_loss_step"


class TrackerUnavailable(RuntimeError):
    """The tracker cannot be used: package missing, tracking URI unreachable, run not writable."""


class Logger:
    """Base class of the experiment trackers; subclasses implement the ``_``-less methods."""

    #: The config name of the tracker (``train.logger.type``).
    kind: str = ""

    def check(self) -> None:
        """Raise :class:`TrackerUnavailable` (naming the URI or folder and the fix) when the
        tracker cannot be written; called before training starts."""

    def start(self, *, run_name: str | None = None, run_key: str | None = None, tags: dict | None = None) -> None:
        """Open the tracked run, or continue the one tagged with ``run_key`` when it exists."""
        raise NotImplementedError

    def logged_through(self) -> tuple[int, int]:
        """``(last epoch, last global step)`` the tracked run holds already; -1 for none."""
        return -1, -1

    def log_hyperparams(self, params: dict[str, Any]) -> None:
        raise NotImplementedError

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        raise NotImplementedError

    def log_artifact(self, path: str | os.PathLike, artifact_path: str | None = None) -> None:
        """Attach a file or a folder to the tracked run (trackers without artifacts ignore it)."""

    def set_tags(self, tags: dict[str, Any]) -> None:
        """Tag the tracked run (trackers without tags ignore it)."""

    def reopen(self, tags: dict[str, str]) -> bool:
        """Find a finished tracked run by its tags, to attach files of a later step; whether one was found."""
        return False

    def finalize(self, status: str) -> None:
        """End the tracked run: ``"success"``, ``"failed"`` or ``"interrupted"`` (to be resumed)."""

    def describe(self) -> dict[str, Any]:
        """Where the tracked run is, for logs and notes (kind, URI or folder, run id)."""
        return {"kind": self.kind}


def flatten_params(params: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"model": {"n_latent": 10}}`` -> ``{"model.n_latent": 10}``; lists and None as text."""
    flat: dict[str, Any] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten_params(value, name + "."))
        elif isinstance(value, (bool, int, float, str)):
            flat[name] = value
        else:
            flat[name] = repr(value) if not isinstance(value, (list, tuple)) else str(list(value))
    return flat


def finite_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """The numeric, finite entries of a history row (trackers refuse NaN, and text is not a metric)."""
    out = {}
    for key, value in metrics.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if math.isfinite(float(value)):
            out[key] = float(value)
    return out


def check_writable(folder: Path, what: str) -> None:
    """Raise :class:`TrackerUnavailable` unless ``folder`` (or the nearest parent that exists) is writable."""
    probe = Path(folder)
    while not probe.exists():
        probe = probe.parent
    if not os.access(probe, os.W_OK):
        raise TrackerUnavailable(f"{what}: cannot write under {folder} ({probe} is not writable); "
                                 "give a writable save_dir.")
