"""``MonitorCallback``: track the best value of one logged metric (fastai's ``TrackerCallback``).

Shared by :class:`EarlyStopping` and :class:`ModelCheckpoint` so both agree on what "better"
means and on what to do when the metric is missing.
"""

from __future__ import annotations

import math
from typing import Any

from snakevi.train.callbacks.base import Callback


class MonitorCallback(Callback):
    """Remember the best value seen of ``monitor``.

    Parameters
    ----------
    monitor
        Name of an epoch metric (a key of ``trainer.logged_metrics``).
    mode
        ``"min"``: lower is better; ``"max"``: higher is better.
    min_delta
        An improvement must beat the best value by more than this (absolute).
    """

    def __init__(self, monitor: str, mode: str = "min", min_delta: float = 0.0) -> None:
        if mode not in ("min", "max"):
            raise ValueError(f"mode={mode!r}: expected 'min' or 'max'.")
        self.monitor = monitor
        self.mode = mode
        self.min_delta = abs(float(min_delta))
        self.best_score = math.inf if mode == "min" else -math.inf
        self.best_epoch: int | None = None

    @property
    def needs_validation(self) -> bool:
        """True when the monitored metric comes from the validation loop."""
        return "validation" in self.monitor

    def is_improvement(self, current: float) -> bool:
        """Whether ``current`` beats the best value by more than ``min_delta`` (NaN never does)."""
        if self.mode == "min":
            return current < self.best_score - self.min_delta
        return current > self.best_score + self.min_delta

    def read_monitor(self, trainer) -> float | None:
        """The monitored value this epoch; None on an epoch without validation when it is a validation metric."""
        metrics = trainer.logged_metrics
        if self.monitor in metrics:
            return float(metrics[self.monitor])
        if "validation" in self.monitor and not trainer.validated:
            return None
        available = sorted(k for k in metrics if k != "epoch")
        raise KeyError(
            f"{type(self).__name__}(monitor={self.monitor!r}): the metric was not logged in epoch "
            f"{trainer.current_epoch}; logged metrics: {available}. Monitor one of those "
            "(validation metrics need a validation set)."
        )

    def state_dict(self) -> dict[str, Any]:
        return {"best_score": self.best_score, "best_epoch": self.best_epoch}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best_score = float(state["best_score"])
        self.best_epoch = state["best_epoch"]
