"""The saved-model bundle: a directory with ``model.pt`` (tensors only) and ``model.json``.

``model.pt`` is a flat ``state_dict`` of tensors, read back with
``torch.load(weights_only=True)``, so opening a model file can never run code. Everything else
(constructor parameters, registry, var_names, history, split indices) is plain JSON. The
bundle is written to a temporary sibling directory and renamed into place, so a crash never
leaves a half-written model that looks complete.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from snakevi._atomic import atomic_path
from snakevi._constants import MODEL_FORMAT_VERSION
from snakevi._safe_load import load_error_reason

WEIGHTS_FILE = "model.pt"
META_FILE = "model.json"


class ModelFileError(ValueError):
    """A model bundle is missing, unreadable, unsafe or from an incompatible version."""


def write_bundle(dir_path: str | os.PathLike, state_dict: dict, meta: dict, *, overwrite: bool = False) -> Path:
    """Write ``state_dict`` and ``meta`` as a model bundle at ``dir_path``.

    Parameters
    ----------
    dir_path
        Target directory. It must not exist unless ``overwrite`` is True.
    state_dict
        Mapping of parameter names to tensors (``module.state_dict()``).
    meta
        JSON-serialisable metadata; ``format_version`` is added here.
    overwrite
        Replace an existing bundle (the old one is removed only after the new one is in place).
    """
    import torch

    target = Path(dir_path)
    if target.exists() and not overwrite:
        raise FileExistsError(
            f"{target} already exists; pass overwrite=True to replace it or choose another directory."
        )
    with atomic_path(target) as staging:
        staging.mkdir()
        torch.save({k: v.detach().cpu() for k, v in state_dict.items()}, staging / WEIGHTS_FILE)
        payload = {"format_version": MODEL_FORMAT_VERSION, **meta}
        (staging / META_FILE).write_text(json.dumps(payload, indent=1))
    return target


def read_meta(dir_path: str | os.PathLike) -> dict:
    """The ``model.json`` of a model bundle (checked like in :func:`read_bundle`), without the weights.

    Cheap (no torch import): enough to check data against the model's registry before loading it.
    """
    directory = Path(dir_path)
    meta_path, weights_path = directory / META_FILE, directory / WEIGHTS_FILE
    for path in (meta_path, weights_path):
        if not path.is_file():
            raise ModelFileError(
                f"{path} not found: {directory} is not a snakevi model directory "
                f"(it must hold {WEIGHTS_FILE} and {META_FILE}, as written by model.save())."
            )
    try:
        meta = json.loads(meta_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ModelFileError(f"{meta_path} is not valid JSON ({err}); the model directory is corrupted.") from err
    version = meta.get("format_version") if isinstance(meta, dict) else None
    if not isinstance(version, int) or version > MODEL_FORMAT_VERSION:
        raise ModelFileError(
            f"{meta_path} has format_version {version!r}; this snakevi reads versions up to "
            f"{MODEL_FORMAT_VERSION}. Upgrade snakevi to load it."
        )
    return meta


def read_bundle(dir_path: str | os.PathLike, map_location: str | None = "cpu") -> tuple[dict, dict]:
    """Read a model bundle written by :func:`write_bundle`.

    Returns
    -------
    ``(state_dict, meta)``.

    Raises
    ------
    ModelFileError
        When a file is missing, the weights are not a plain tensor dict (a pickle that would
        run code is refused by ``weights_only=True``), or the format version is newer than
        this snakevi understands.
    """
    import torch

    meta = read_meta(dir_path)
    weights_path = Path(dir_path) / WEIGHTS_FILE
    try:
        state_dict = torch.load(weights_path, map_location=map_location, weights_only=True)
    except Exception as err:  # noqa: BLE001 - any failure here means an unusable file
        raise ModelFileError(
            f"{weights_path} could not be read as a plain tensor state_dict ({load_error_reason(err)}). "
            "snakevi loads weights with torch.load(weights_only=True) and refuses files that would "
            "run code; re-save the model with snakevi."
        ) from err
    if not isinstance(state_dict, dict) or not all(isinstance(v, torch.Tensor) for v in state_dict.values()):
        raise ModelFileError(f"{weights_path} does not hold a dict of tensors; it was not written by snakevi.")
    return state_dict, meta
