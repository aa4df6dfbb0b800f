"""User-facing models: :class:`SCVI`, :class:`SCANVI` (and the base class for more)."""

from snakevi.model.arches import prepare_query_anndata
from snakevi.model.base import BaseModelClass
from snakevi.model.bundle import ModelFileError
from snakevi.model.scanvi import SCANVI
from snakevi.model.scvi import SCVI

__all__ = ["BaseModelClass", "ModelFileError", "SCANVI", "SCVI", "prepare_query_anndata"]
