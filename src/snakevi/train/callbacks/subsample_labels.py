"""``SubSampleLabels``: draw the labelled cells of the training loader anew at each epoch start."""

from __future__ import annotations

from snakevi.train.callbacks.base import Callback


class SubSampleLabels(Callback):
    """Call ``trainer.train_loader.resample_labels()`` at the start of every epoch (scvi-tools' callback).

    With ``n_samples_per_label`` set on a :class:`~snakevi.data.SemiSupervisedDataLoader`, each
    epoch then sees another subset of at most that many labelled cells per class. The loader
    draws from ``(seed, epoch)``, so a resumed run draws what the uninterrupted run drew.
    ``SCANVI.train`` adds this callback whenever there are labelled cells, also when the user
    passes callbacks of their own.
    """

    def on_train_epoch_start(self, trainer, plan) -> None:
        loader = trainer.train_loader
        resample = getattr(loader, "resample_labels", None)
        if resample is None:
            raise TypeError(
                f"SubSampleLabels needs a training loader with resample_labels() (a SemiSupervisedDataLoader); "
                f"got {type(loader).__name__}. Remove the callback or use that loader."
            )
        resample()
