"""``Callback``: a plain object whose methods are named after the trainer's events.

Every hook is a no-op here, so a callback overrides only what it needs (fastai/Lightning
style). Two class attributes tell the trainer how to treat it:

- ``needs_validation``: True makes a trainer built with ``check_val_every_n_epoch=None`` run
  the validation loop every epoch (e.g. early stopping on ``elbo_validation``);
- ``runs_last``: True runs this callback after all the others in every hook, so checkpoint
  writers see the epoch's final state (metrics logged by other callbacks included).
"""

from __future__ import annotations

from typing import Any


class Callback:
    """Base class of trainer callbacks; see the module docstring for the two flags."""

    needs_validation: bool = False
    runs_last: bool = False

    def on_fit_start(self, trainer, plan) -> None:
        """After the optimizer is built and any checkpoint restored, before the first epoch."""

    def on_train_epoch_start(self, trainer, plan) -> None:
        """Before the epoch's first training batch; ``trainer.log`` adds to this epoch's row."""

    def on_train_batch_end(self, trainer, plan, loss, batch_idx: int) -> None:
        """After each optimizer step; ``loss`` is the detached device tensor (do not ``.item()`` it)."""

    def on_validation_epoch_end(self, trainer, plan) -> None:
        """After the validation loop (and a validation-metric scheduler step)."""

    def on_train_epoch_end(self, trainer, plan) -> None:
        """After the epoch's row is in ``trainer.history``; set ``trainer.should_stop`` to stop."""

    def on_fit_end(self, trainer, plan) -> None:
        """After the last epoch (not called when training raised)."""

    def on_exception(self, trainer, plan, exception: BaseException) -> None:
        """When training raised (including KeyboardInterrupt); the trainer re-raises afterwards."""

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint must hold to resume this callback (plain values, tensors)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what ``state_dict`` returned."""
