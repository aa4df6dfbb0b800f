"""Data: register an AnnData (setup + validation), hold it as arrays, split it, load minibatches.

Importing ``snakevi.data`` does not import torch: :class:`AnnDataLoader` (the one torch user)
is imported on first access, so the register step starts fast.
"""

from __future__ import annotations

from typing import Any

from snakevi.data.celldata import CellData, library_size_stats
from snakevi.data.registry import (
    check_registry_format,
    get_registry,
    registry_from_json,
    registry_to_json,
    setup_anndata,
    transfer_setup,
)
from snakevi.data.semisupervised import SemiSupervisedDataLoader, SemiSupervisedDataSplitter
from snakevi.data.simulate import simulate
from snakevi.data.splitter import DataSplitter, validate_data_split, validate_external_indexing
from snakevi.data.validation import RegistrationError

__all__ = [
    "AnnDataLoader",
    "CellData",
    "DataSplitter",
    "RegistrationError",
    "SemiSupervisedDataLoader",
    "SemiSupervisedDataSplitter",
    "check_registry_format",
    "get_registry",
    "library_size_stats",
    "registry_from_json",
    "registry_to_json",
    "setup_anndata",
    "simulate",
    "transfer_setup",
    "validate_data_split",
    "validate_external_indexing",
]


def __getattr__(name: str) -> Any:
    # PEP 562: the loader (and with it torch) is imported only when someone asks for it.
    if name == "AnnDataLoader":
        from snakevi.data.loader import AnnDataLoader

        return AnnDataLoader
    raise AttributeError(f"module 'snakevi.data' has no attribute {name!r}")
