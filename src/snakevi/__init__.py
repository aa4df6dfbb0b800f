"""snakevi: scVI-family models trained in plain PyTorch, run as a Snakemake workflow.

Importing the package is cheap: the subpackages (``snakevi.data``, ``snakevi.module``,
``snakevi.train``, ``snakevi.model``) load on first attribute access, so ``snakevi --help``
and the workflow's step scripts start fast.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_SUBPACKAGES = ("data", "module", "train", "model")


def __getattr__(name: str):
    if name in _SUBPACKAGES:
        return importlib.import_module(f"snakevi.{name}")
    # Every class of snakevi.model.MODELS is also snakevi.<its name> (snakevi.SCVI, snakevi.LinearSCVI),
    # loaded on first access; a new model class needs no line here. Only capitalised names are
    # looked up, so probes such as __wrapped__ do not import torch.
    if name[:1].isupper():
        from snakevi.model import MODELS

        for cls in MODELS.values():
            if cls.__name__ == name:
                return cls
    raise AttributeError(f"module 'snakevi' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_SUBPACKAGES])
