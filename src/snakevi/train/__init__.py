"""Training: ``Trainer`` (the loop), ``TrainingPlan`` (one step of a module), callbacks, schedules.

Nothing here knows about AnnData: loaders yield minibatch dicts of tensors or numpy arrays.
"""

from snakevi.train.callbacks import (
    Callback,
    CSVLogger,
    EarlyStopping,
    LearningRateMonitor,
    ModelCheckpoint,
    NaNGuard,
    NonFiniteLossError,
    ProgressBar,
    SubSampleLabels,
)
from snakevi.train.adversarial_plan import AdversarialTrainingPlan
from snakevi.train.checkpoint_io import load_checkpoint
from snakevi.train.metrics import EpochMetrics
from snakevi.train.plan import TrainingPlan
from snakevi.train.reproducibility import seed_everything
from snakevi.train.schedules import compute_kl_weight, get_max_epochs_heuristic
from snakevi.train.semisupervised_plan import SemiSupervisedTrainingPlan
from snakevi.train.trainer import Trainer

__all__ = [
    "AdversarialTrainingPlan",
    "CSVLogger",
    "Callback",
    "EarlyStopping",
    "EpochMetrics",
    "LearningRateMonitor",
    "ModelCheckpoint",
    "NaNGuard",
    "NonFiniteLossError",
    "ProgressBar",
    "SemiSupervisedTrainingPlan",
    "SubSampleLabels",
    "Trainer",
    "TrainingPlan",
    "compute_kl_weight",
    "get_max_epochs_heuristic",
    "load_checkpoint",
    "seed_everything",
]
