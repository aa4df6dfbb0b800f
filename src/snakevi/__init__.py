"""snakevi: scVI-family models trained in plain PyTorch, run as a Snakemake workflow.

Importing the package is cheap: the subpackages (``snakevi.data``, ``snakevi.module``,
``snakevi.train``, ``snakevi.model``) load on first attribute access, so ``snakevi --help``
and the workflow's step scripts start fast.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_SUBPACKAGES = ("data", "module", "train", "model")
#: Models importable as ``snakevi.SCVI`` / ``snakevi.SCANVI`` (loaded on first access too).
_MODELS = ("SCVI", "SCANVI")


def __getattr__(name: str):
    if name in _SUBPACKAGES:
        return importlib.import_module(f"snakevi.{name}")
    if name in _MODELS:
        return getattr(importlib.import_module("snakevi.model"), name)
    raise AttributeError(f"module 'snakevi' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_SUBPACKAGES, *_MODELS])
