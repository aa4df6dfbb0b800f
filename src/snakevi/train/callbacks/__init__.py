"""Trainer callbacks: plain objects with hooks named after the trainer's events."""

from snakevi.train.callbacks.base import Callback
from snakevi.train.callbacks.checkpoint import ModelCheckpoint
from snakevi.train.callbacks.csv_logger import CSVLogger, history_to_csv
from snakevi.train.callbacks.early_stopping import EarlyStopping
from snakevi.train.callbacks.experiment_tracking import ExperimentTracking
from snakevi.train.callbacks.lr_monitor import LearningRateMonitor
from snakevi.train.callbacks.nan_guard import NaNGuard, NonFiniteLossError
from snakevi.train.callbacks.progress import ProgressBar
from snakevi.train.callbacks.subsample_labels import SubSampleLabels
from snakevi.train.callbacks.tracker import MonitorCallback

__all__ = [
    "CSVLogger",
    "Callback",
    "EarlyStopping",
    "ExperimentTracking",
    "LearningRateMonitor",
    "ModelCheckpoint",
    "MonitorCallback",
    "NaNGuard",
    "NonFiniteLossError",
    "ProgressBar",
    "SubSampleLabels",
    "history_to_csv",
]
