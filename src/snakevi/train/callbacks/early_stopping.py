"""``EarlyStopping``: stop when a monitored metric stops improving (scvi's ``LoudEarlyStopping``)."""

from __future__ import annotations

import logging
import math
import sys
from typing import Any

from snakevi.train.callbacks.tracker import MonitorCallback

logger = logging.getLogger(__name__)


class EarlyStopping(MonitorCallback):
    """Stop training after ``patience`` records of ``monitor`` without improvement.

    The decision is taken at the end of each epoch where ``monitor`` was logged, after the
    first ``warmup_epochs`` epochs. The reason is stored on ``trainer.stop_reason``, logged, and
    printed to stderr when the fit ends.

    Parameters
    ----------
    monitor
        Epoch metric to watch (scvi-tools' default ``"elbo_validation"``).
    min_delta
        Smallest absolute change that counts as an improvement.
    patience
        Records without improvement after which training stops.
    mode
        ``"min"`` or ``"max"``.
    warmup_epochs
        Epochs at the start during which the metric is ignored entirely.
    check_finite
        Stop as soon as the metric is NaN or infinite.
    """

    def __init__(
        self,
        monitor: str = "elbo_validation",
        min_delta: float = 0.0,
        patience: int = 45,
        mode: str = "min",
        warmup_epochs: int = 0,
        check_finite: bool = True,
    ) -> None:
        super().__init__(monitor, mode, min_delta)
        if patience < 1:
            raise ValueError(f"patience={patience!r}: expected an int >= 1.")
        self.patience = patience
        self.warmup_epochs = warmup_epochs
        self.check_finite = check_finite
        self.wait_count = 0
        self.stopped_epoch: int | None = None
        self.reason: str | None = None

    def evaluate(self, current: float) -> tuple[bool, str | None]:
        """Decide on one new value of the metric: ``(stop, reason)``; updates only this callback's state."""
        if self.check_finite and not math.isfinite(current):
            return True, (
                f"Monitored metric {self.monitor} = {current} is not finite. "
                f"Previous best value was {self.best_score:.3f}. Signaling Trainer to stop."
            )
        if self.is_improvement(current):
            if math.isfinite(self.best_score):
                reason = (
                    f"Metric {self.monitor} improved by {abs(self.best_score - current):.3f} >= "
                    f"min_delta = {self.min_delta}. New best score: {current:.3f}"
                )
            else:
                reason = f"Metric {self.monitor} improved. New best score: {current:.3f}"
            self.best_score = current
            self.wait_count = 0
            return False, reason
        self.wait_count += 1
        if self.wait_count >= self.patience:
            return True, (
                f"Monitored metric {self.monitor} did not improve in the last {self.wait_count} records. "
                f"Best score: {self.best_score:.3f}. Signaling Trainer to stop."
            )
        return False, None

    def on_train_epoch_end(self, trainer, plan) -> None:
        epoch = trainer.current_epoch
        if epoch < self.warmup_epochs:
            return
        current = self.read_monitor(trainer)
        if current is None:
            return
        was_best = self.best_score
        stop, reason = self.evaluate(current)
        if self.best_score != was_best:
            self.best_epoch = epoch
        if stop:
            self.stopped_epoch = epoch
            self.reason = reason
            trainer.should_stop = True
            trainer.stop_reason = reason
            logger.info(reason)

    def on_fit_end(self, trainer, plan) -> None:
        # Printed at the end, as scvi-tools does, so it does not break the progress bar's line.
        if self.reason is not None:
            print(self.reason, file=sys.stderr)

    def state_dict(self) -> dict[str, Any]:
        return {
            **super().state_dict(),
            "wait_count": self.wait_count,
            "stopped_epoch": self.stopped_epoch,
            "reason": self.reason,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.wait_count = int(state["wait_count"])
        self.stopped_epoch = state["stopped_epoch"]
        self.reason = state["reason"]
