"""Training: ``Trainer`` (the loop), ``TrainingPlan`` (one step of a module), callbacks, schedules,
and the training recipe (:mod:`snakevi.train.recipe`: resume, signal stop, live history, phases).

Nothing here knows about AnnData: loaders yield minibatch dicts of tensors or numpy arrays.
The names below load on first access (PEP 562), so importing a torch-free part such as
``snakevi.train.recipe`` (what a step script does at start-up) does not import torch.
"""

from __future__ import annotations

import importlib

#: Public name -> the submodule that defines it.
_EXPORTS = {
    "AdversarialTrainingPlan": "adversarial_plan",
    "CSVLogger": "callbacks",
    "Callback": "callbacks",
    "EarlyStopping": "callbacks",
    "EpochMetrics": "metrics",
    "LearningRateMonitor": "callbacks",
    "ModelCheckpoint": "callbacks",
    "NaNGuard": "callbacks",
    "NonFiniteLossError": "callbacks",
    "ProgressBar": "callbacks",
    "SemiSupervisedTrainingPlan": "semisupervised_plan",
    "SubSampleLabels": "callbacks",
    "Trainer": "trainer",
    "TrainingPlan": "plan",
    "compute_kl_weight": "schedules",
    "get_max_epochs_heuristic": "schedules",
    "load_checkpoint": "checkpoint_io",
    "seed_everything": "reproducibility",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"snakevi.train.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'snakevi.train' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
