"""User-facing models: :class:`SCVI`, :class:`SCANVI`, :class:`LinearSCVI` (and the base class for more).

``MODELS`` names them (the config's ``model_class``); :func:`load_model` loads a saved model with
its own class.
"""

from snakevi.model.arches import prepare_query_anndata
from snakevi.model.base import BaseModelClass
from snakevi.model.bundle import ModelFileError
from snakevi.model.linear_scvi import LinearSCVI
from snakevi.model.registry import MODELS, load_model
from snakevi.model.scanvi import SCANVI
from snakevi.model.scvi import SCVI

__all__ = ["BaseModelClass", "LinearSCVI", "MODELS", "ModelFileError", "SCANVI", "SCVI", "load_model",
           "prepare_query_anndata"]
