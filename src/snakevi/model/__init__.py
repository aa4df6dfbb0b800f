"""User-facing models: :class:`SCVI` (and the base class for more)."""

from snakevi.model.base import BaseModelClass
from snakevi.model.bundle import ModelFileError
from snakevi.model.scvi import SCVI

__all__ = ["BaseModelClass", "ModelFileError", "SCVI"]
