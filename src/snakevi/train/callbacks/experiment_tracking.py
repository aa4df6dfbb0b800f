"""``ExperimentTracking``: hand the fit's metrics and hyperparameters to experiment trackers.

The trainer adds it (last of all callbacks) when it is given ``logger=``. On the main process
only (rank 0 under DDP), it

- opens or continues each tracker's run (``trainer.tracking``) and logs ``trainer.hparams``;
- logs every history row at step = epoch, skipping the epochs the tracked run holds already,
  and first the restored rows it lacks (a resumed fit, or a tracker added on resume);
- logs ``train_loss_step`` every ``log_every_n_steps`` optimizer steps (one host read then);
- ends each run: ``success``, ``interrupted`` (a signal stop, to be resumed) or ``failed``.

``trainer.tracking`` may hold ``hparams`` (more to record, e.g. the workflow run's config) and
``epoch_offset`` and ``step_offset``: a later phase of a run
(scANVI after scVI) continues the same tracked run, its epochs and steps numbered on after the
earlier phases', as in history.csv.

A tracker that fails while training (a server gone away) is warned about once and left out;
training goes on.
"""

from __future__ import annotations

import logging
import warnings

from snakevi.train.callbacks.base import Callback
from snakevi.train.loggers.base import STEP_METRIC, finite_metrics

log = logging.getLogger(__name__)


class ExperimentTracking(Callback):
    """Log to ``loggers`` (see the module docstring).

    Parameters
    ----------
    loggers
        :class:`~snakevi.train.loggers.Logger` objects.
    log_every_n_steps
        How often to log ``train_loss_step`` (0: never).
    """

    runs_last = True

    def __init__(self, loggers: list, log_every_n_steps: int = 50) -> None:
        self.loggers = list(loggers)
        self.log_every_n_steps = log_every_n_steps
        self._through: dict[int, list[int]] = {}  # id(logger) -> [last epoch, last step] it holds
        self._last_step = -1
        self._epoch_offset = self._step_offset = 0

    def on_fit_start(self, trainer, plan) -> None:
        if not trainer.is_main:
            return
        where = dict(trainer.tracking)
        self._epoch_offset = int(where.pop("epoch_offset", 0))
        self._step_offset = int(where.pop("step_offset", 0))
        hparams = {**trainer.hparams, **where.pop("hparams", {})}
        for tracker in self.loggers:
            tracker.start(**where)
            self._through[id(tracker)] = list(tracker.logged_through())
            tracker.log_hyperparams(hparams)
            described = tracker.describe()
            log.info("tracking to %s", ", ".join(f"{k}={v}" for k, v in described.items()))
        for row in trainer.history:  # restored rows the tracked run does not hold
            self._log_epoch(row)

    def on_train_batch_end(self, trainer, plan, loss, batch_idx: int) -> None:
        n = self.log_every_n_steps
        if not (trainer.is_main and n and trainer.global_step % n == 0 and trainer.global_step != self._last_step):
            return
        self._last_step = trainer.global_step
        step = trainer.global_step + self._step_offset
        value = float(loss)  # the one host read of this step
        for tracker in list(self.loggers):
            if step > self._through[id(tracker)][1]:
                self._send(tracker, {STEP_METRIC: value}, step)

    def on_train_epoch_end(self, trainer, plan) -> None:
        if trainer.is_main:
            self._log_epoch(trainer.history[-1])

    def on_fit_end(self, trainer, plan) -> None:
        if trainer.is_main:
            interrupted = (trainer.stop_reason or "").startswith("interrupted")
            self._finalize("interrupted" if interrupted else "success")

    def on_exception(self, trainer, plan, exception: BaseException) -> None:
        if trainer.is_main and self._through:
            self._finalize("interrupted" if isinstance(exception, KeyboardInterrupt) else "failed")

    def _log_epoch(self, row: dict) -> None:
        epoch = int(row["epoch"]) + self._epoch_offset
        metrics = {**finite_metrics(row), "epoch": float(epoch)}
        for tracker in list(self.loggers):
            through = self._through[id(tracker)]
            if epoch > through[0]:
                if self._send(tracker, metrics, epoch):
                    through[0] = epoch

    def _send(self, tracker, metrics: dict, step: int) -> bool:
        try:
            tracker.log_metrics(metrics, step)
            return True
        except Exception as err:  # a tracker must not cost the training
            warnings.warn(f"{type(tracker).__name__} ({tracker.describe()}) failed ({err}); it gets no further "
                          "metrics in this fit, training goes on.", RuntimeWarning, stacklevel=2)
            self.loggers.remove(tracker)
            return False

    def _finalize(self, status: str) -> None:
        for tracker in self.loggers:
            try:
                tracker.finalize(status)
            except Exception as err:  # noqa: BLE001 - never mask the fit's own outcome
                log.warning("%s could not end its run: %s", type(tracker).__name__, err)
