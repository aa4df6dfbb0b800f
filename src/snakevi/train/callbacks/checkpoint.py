"""``ModelCheckpoint``: keep ``last.ckpt`` (to resume) and ``best.ckpt`` (best monitored value)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Callable

from snakevi.train.callbacks.tracker import MonitorCallback
from snakevi.train.checkpoint_io import write_checkpoint


class ModelCheckpoint(MonitorCallback):
    """Write the trainer's full state to ``dirpath/last.ckpt`` and ``dirpath/best.ckpt``.

    Files are written atomically (temporary file + ``os.replace``), each with its SHA-256 in
    ``<name>.sha256.json`` beside it (checked on resume), and hold the dict of
    :meth:`snakevi.train.Trainer.checkpoint_state`, loadable with ``torch.load(weights_only=True)``
    and by ``Trainer.fit(..., ckpt_path=...)``. Runs after the other callbacks (``runs_last``) so
    the file includes the whole epoch (early-stopping decision, metrics logged by callbacks).

    Parameters
    ----------
    dirpath
        Folder for the two files (created if needed).
    monitor, mode
        Metric that defines "best" and whether lower (``"min"``) or higher is better.
    save_last
        Write ``last.ckpt`` (also once more at the end of fit if the last epoch was skipped).
    save_best
        Write ``best.ckpt`` when ``monitor`` improves.
    every_n_epochs
        Consider saving only after every n-th epoch.
    every_n_seconds
        Also wait until this many seconds have passed since the previous save (or the start of
        the fit): with epochs of a fraction of a second, writing (and fsync-ing) a checkpoint
        after each would cost more than the training, above all on a cluster's network
        filesystem. At most this much training is lost to a hard kill; the last epoch is
        always saved at the end of the fit, and :meth:`save_now` saves at once (the workflow's
        signal handler uses it before stopping). ``None`` saves after every considered epoch.
    after_save
        Called as ``after_save(epoch)`` on the main process once the epoch's files are written
        (the training recipe hands the folder to its object-store mirror here).
    """

    runs_last = True

    def __init__(
        self,
        dirpath: str | os.PathLike,
        monitor: str = "validation_loss",
        mode: str = "min",
        save_last: bool = True,
        save_best: bool = True,
        every_n_epochs: int = 1,
        every_n_seconds: float | None = None,
        after_save: Callable[[int], None] | None = None,
    ) -> None:
        super().__init__(monitor, mode)
        if every_n_epochs < 1:
            raise ValueError(f"every_n_epochs={every_n_epochs!r}: expected an int >= 1.")
        if every_n_seconds is not None and not every_n_seconds >= 0:
            raise ValueError(f"every_n_seconds={every_n_seconds!r}: expected a number >= 0, or None.")
        self.dirpath = Path(dirpath)
        self.save_last = save_last
        self.save_best = save_best
        self.every_n_epochs = every_n_epochs
        self.every_n_seconds = every_n_seconds
        self.after_save = after_save
        self._last_save_time = time.monotonic()
        self.best_model_path: str | None = None
        self.last_model_path: str | None = None
        self._last_saved_epoch: int | None = None

    @property
    def needs_validation(self) -> bool:
        return self.save_best and "validation" in self.monitor

    def on_fit_start(self, trainer, plan) -> None:
        self._last_save_time = time.monotonic()

    def on_train_epoch_end(self, trainer, plan) -> None:
        epoch = trainer.current_epoch
        if (epoch + 1) % self.every_n_epochs != 0:
            return
        due = self.every_n_seconds is None or time.monotonic() - self._last_save_time >= self.every_n_seconds
        dist = getattr(trainer, "dist", None)
        if dist is not None and dist.enabled:
            due = dist.any(due)  # clocks differ between ranks; all save the same epochs, or none
        if due:
            self._save_epoch(trainer)

    def save_now(self, trainer) -> None:
        """Save the epoch that just ended, unless it is saved already (call from ``on_train_epoch_end``)."""
        if trainer.history and self._last_saved_epoch != trainer.history[-1]["epoch"]:
            self._save_epoch(trainer)

    def _save_epoch(self, trainer) -> None:
        epoch = trainer.current_epoch
        improved = False
        if self.save_best:
            current = self.read_monitor(trainer)
            if current is not None and self.is_improvement(current):
                self.best_score, self.best_epoch, improved = current, epoch, True
                self.best_model_path = str(self.dirpath / "best.ckpt")
        if self.save_last:
            self.last_model_path = str(self.dirpath / "last.ckpt")
        self._last_saved_epoch = epoch
        if not (improved or self.save_last):
            return
        # Taken after updating our own fields, so each file remembers the best score it knows.
        state = trainer.checkpoint_state()  # under DDP a collective: every rank gets here
        if getattr(trainer, "is_main", True):
            if improved:
                write_checkpoint(state, self.best_model_path)
            if self.save_last:
                write_checkpoint(state, self.last_model_path)
            self._saved(epoch)
        self._last_save_time = time.monotonic()

    def on_fit_end(self, trainer, plan) -> None:
        if not (self.save_last and trainer.history):
            return
        if self._last_saved_epoch != trainer.history[-1]["epoch"]:
            self._last_saved_epoch = trainer.history[-1]["epoch"]
            self.last_model_path = str(self.dirpath / "last.ckpt")
            state = trainer.checkpoint_state()
            if getattr(trainer, "is_main", True):
                write_checkpoint(state, self.last_model_path)
                self._saved(self._last_saved_epoch)

    def _saved(self, epoch: int) -> None:
        if self.after_save is not None:
            self.after_save(epoch)

    def state_dict(self) -> dict[str, Any]:
        # Paths are not saved: they follow this callback's dirpath, so a moved folder still resumes.
        return {**super().state_dict(), "last_saved_epoch": self._last_saved_epoch}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self._last_saved_epoch = state["last_saved_epoch"]
        self.best_model_path = str(self.dirpath / "best.ckpt") if self.best_epoch is not None else None
        self.last_model_path = str(self.dirpath / "last.ckpt") if self._last_saved_epoch is not None else None
