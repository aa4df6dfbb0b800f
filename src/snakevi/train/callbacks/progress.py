"""``ProgressBar``: one tqdm bar over epochs on stderr, updated once per epoch."""

from __future__ import annotations

import sys

from snakevi.train.callbacks.base import Callback


class ProgressBar(Callback):
    """Show "Epoch k/N" with the epoch's ``train_loss``; added by ``Trainer(enable_progress_bar=True)``."""

    def __init__(self) -> None:
        self._bar = None

    def on_fit_start(self, trainer, plan) -> None:
        from tqdm.auto import tqdm  # imported here: only runs with a bar pay for it

        # Under DDP one bar, rank 0's (every rank has the same epochs and metrics).
        self._bar = tqdm(
            disable=not getattr(trainer, "is_main", True),
            total=trainer.max_epochs,
            initial=trainer.current_epoch,
            desc=f"Epoch {trainer.current_epoch + 1}/{trainer.max_epochs}",
            file=sys.stderr,
            dynamic_ncols=True,
        )

    def on_train_epoch_start(self, trainer, plan) -> None:
        self._bar.set_description(f"Epoch {trainer.current_epoch + 1}/{trainer.max_epochs}", refresh=False)

    def on_train_epoch_end(self, trainer, plan) -> None:
        loss = trainer.logged_metrics.get("train_loss")
        if loss is not None:
            self._bar.set_postfix(train_loss=f"{loss:.4g}", refresh=False)
        self._bar.update(1)

    def _close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def on_fit_end(self, trainer, plan) -> None:
        self._close()

    def on_exception(self, trainer, plan, exception) -> None:
        self._close()
