"""``CSVLogger``: keep ``trainer.history`` on disk as a CSV file, rewritten after every epoch."""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

from snakevi.train.callbacks.base import Callback
from snakevi.train.checkpoint_io import atomic_write_text


def history_to_csv(history: list[dict], columns: list[str] | None = None) -> str:
    """CSV text of a history: one row per epoch, columns ``epoch`` then the others (sorted unless
    ``columns`` gives their order); blanks for missing."""
    names = sorted({key for row in history for key in row} - {"epoch"}) if columns is None else columns
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=["epoch", *names], restval="", lineterminator="\n")
    writer.writeheader()
    for row in history:
        writer.writerow(row)
    return buffer.getvalue()


class CSVLogger(Callback):
    """Write the history to ``path`` (atomically) at the end of every epoch.

    Runs after the other callbacks (``runs_last``) so metrics they log in
    ``on_train_epoch_end`` are in the file.
    """

    runs_last = True

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)

    def on_train_epoch_end(self, trainer, plan) -> None:
        if getattr(trainer, "is_main", True):  # under DDP every rank has the same history; one writes
            atomic_write_text(history_to_csv(trainer.history), self.path)
