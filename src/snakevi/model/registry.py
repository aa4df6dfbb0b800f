"""The model classes by name: ``MODELS`` (``model_class`` in the config -> class) and :func:`load_model`.

A new model registers here (one line) and declares the rest on its class (see
:class:`~snakevi.model.phases.TrainingDeclaration`): its latent key, whether it predicts labels,
its training phases. Importing this is cheap: the model modules import torch only when used.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from snakevi.model.bundle import ModelFileError
from snakevi.model.linear_scvi import LinearSCVI
from snakevi.model.scanvi import SCANVI
from snakevi.model.scvi import SCVI

if TYPE_CHECKING:  # pragma: no cover
    from anndata import AnnData

    from snakevi.data import CellData
    from snakevi.model.base import BaseModelClass

#: ``model_class`` (the workflow config, ``snakevi train --model-class``) -> model class.
MODELS: dict[str, type[BaseModelClass]] = {cls.model_class: cls for cls in (SCVI, SCANVI, LinearSCVI)}


def model_class(name: str) -> type[BaseModelClass]:
    """The class registered as ``name``; a ``ValueError`` lists the names there are."""
    try:
        return MODELS[name]
    except KeyError:
        raise ValueError(f"Unknown model_class {name!r}; use one of {list(MODELS)}.") from None


def saved_model_class(dir_path: str | os.PathLike, meta: dict | None = None) -> type[BaseModelClass]:
    """The class of the model saved in ``dir_path``, from its ``meta`` (read here if not given).

    A bundle's ``model.json`` is read without torch; a scvi-tools directory is read whole
    (restricted, see :func:`snakevi.model.persistence.read_model_dir`).
    """
    if meta is None:
        from snakevi.model.persistence import read_model_dir

        meta = read_model_dir(dir_path, weights=False)[1]
    name = meta.get("model_name", "SCVI")
    for cls in MODELS.values():
        if cls.__name__ == name:
            return cls
    raise ModelFileError(
        f"{dir_path} holds a {name} model, which this snakevi does not know (it knows "
        f"{sorted(cls.__name__ for cls in MODELS.values())}); load it with the snakevi version that wrote it."
    )


def load_model(dir_path: str | os.PathLike, adata: AnnData | CellData, **load_kwargs) -> BaseModelClass:
    """Load the model saved in ``dir_path`` with its own class (``SCVI.load``, ``SCANVI.load``, ...).

    Parameters
    ----------
    dir_path
        A model folder written by ``model.save()`` (the train step's ``model/``).
    adata
        The data to use it on: the model's genes, categories it knows (see ``BaseModelClass.load``).
    **load_kwargs
        Passed to the class's ``load`` (``accelerator``, ``verify``).

    Examples
    --------
    >>> from snakevi.model import load_model
    >>> model = load_model("results/demo/model", adata)  # doctest: +SKIP
    """
    return saved_model_class(dir_path).load(dir_path, adata, **load_kwargs)
