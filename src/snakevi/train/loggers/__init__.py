"""Experiment trackers for the trainer: TensorBoard, MLflow and W&B (optional extras).

``make_loggers`` turns what a user writes (``Trainer(logger=...)``, ``model.train(logger=...)``,
the workflow's ``train.logger``) into logger objects::

    "tensorboard"                                   # defaults
    {"type": "wandb", "project": "pbmc"}            # offline unless offline: false
    {"type": "mlflow", "tracking_uri": "sqlite:///results/mlflow.db", "experiment_name": "pbmc"}
    [TensorBoardLogger("tb"), MLFlowLogger("http://127.0.0.1:5000")]
"""

from __future__ import annotations

import os

from snakevi.train.loggers.base import Logger, TrackerUnavailable
from snakevi.train.loggers.mlflow import MLFlowLogger
from snakevi.train.loggers.tensorboard import TensorBoardLogger
from snakevi.train.loggers.wandb import WandbLogger

#: Config names of the trackers and their classes.
LOGGERS = {"tensorboard": TensorBoardLogger, "mlflow": MLFlowLogger, "wandb": WandbLogger}

__all__ = ["LOGGERS", "Logger", "MLFlowLogger", "TensorBoardLogger", "TrackerUnavailable", "WandbLogger",
           "check_trackers", "make_loggers"]


def make_loggers(spec, log_root: str | os.PathLike | None = None) -> list[Logger]:
    """Logger objects from ``spec``: None/False (none), a name, a ``{"type": name, ...}`` mapping,
    a :class:`Logger`, or a list of those.

    Parameters
    ----------
    log_root
        Where the trackers that write files keep them when the spec names no ``save_dir``:
        TensorBoard in ``<log_root>/tensorboard``, W&B in ``<log_root>/wandb``.

    Raises
    ------
    ValueError
        An unknown tracker name or argument, naming it and the known ones.
    """
    if spec is None or spec is False:
        return []
    if isinstance(spec, (list, tuple)):
        return [logger for item in spec for logger in make_loggers(item, log_root)]
    if isinstance(spec, Logger):
        return [spec]
    if isinstance(spec, str):
        spec = {"type": spec}
    if not isinstance(spec, dict):
        raise ValueError(f"logger={spec!r}: expected a tracker name {sorted(LOGGERS)}, a mapping with 'type', "
                         "or a Logger object.")
    kwargs = dict(spec)
    kind = kwargs.pop("type", None)
    if kind not in LOGGERS:
        raise ValueError(f"logger type {kind!r} is unknown; known trackers: {sorted(LOGGERS)} "
                         "(e.g. logger: {type: mlflow, tracking_uri: sqlite:///results/mlflow.db}).")
    if kind in ("tensorboard", "wandb") and log_root is not None:
        kwargs.setdefault("save_dir", os.path.join(log_root, "tensorboard" if kind == "tensorboard" else ""))
    try:
        return [LOGGERS[kind](**kwargs)]
    except TypeError as err:
        raise ValueError(f"logger type {kind!r}: {err}. Check the logger's keys.") from err


def check_trackers(trackers: list[Logger]) -> None:
    """``check()`` each tracker, in the process that will log: alone, or rank 0 of a launch
    (the other ranks log nothing, and N processes creating one SQLite database at once would race)."""
    from snakevi.train.launcher_env import environment_world

    world = environment_world()
    if world is not None and world[0] != 0:
        return
    for tracker in trackers:
        # Once per tracker: the train step checks before reading data, then hands the same objects
        # to every phase's Trainer (a server's /health and a store query each time otherwise).
        if not getattr(tracker, "_checked", False):
            tracker.check()
            tracker._checked = True
