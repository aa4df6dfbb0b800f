"""``LearningRateMonitor``: log the learning rate of each epoch as ``lr-<OptimizerClass>``."""

from __future__ import annotations

from snakevi.train.callbacks.base import Callback


class LearningRateMonitor(Callback):
    """Log the learning rate used during each epoch (Lightning's names).

    One parameter group gives ``lr-Adam``; several give ``lr-Adam/pg1``, ``lr-Adam/pg2``, ...
    Logged at the start of the epoch, so a reduction by the plateau scheduler at the end of
    epoch k shows in the row of epoch k + 1.
    """

    def on_train_epoch_start(self, trainer, plan) -> None:
        optimizer = trainer.optimizer
        name = f"lr-{type(optimizer).__name__}"
        groups = optimizer.param_groups
        for i, group in enumerate(groups):
            trainer.log(name if len(groups) == 1 else f"{name}/pg{i + 1}", float(group["lr"]))
