"""The saved-model bundle: a directory with ``model.pt`` (tensors only) and ``model.json``.

``model.pt`` is a flat ``state_dict`` of tensors, read back with
``torch.load(weights_only=True)``, so opening a model file can never run code. Everything else
(constructor parameters, registry, var_names, history, split indices) is plain JSON. The
bundle is written to a temporary sibling directory and renamed into place, so a crash never
leaves a half-written model that looks complete.

Since format version 2, ``model.json`` records the SHA-256 of ``model.pt`` as written
(``"sha256": {"model.pt": "<hex>"}``), and reading checks it: a weights file damaged in a copy
or changed by hand would otherwise load silently and give other numbers. Version 1 bundles
(no digest) still load.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from snakevi._atomic import atomic_path
from snakevi._constants import MODEL_FORMAT_VERSION
from snakevi._digest import HashingWriter, sha256_file
from snakevi._safe_load import load_error_reason

WEIGHTS_FILE = "model.pt"
META_FILE = "model.json"
#: ``model.json`` key of the weight files' SHA-256 digests (format version 2 on).
DIGESTS_KEY = "sha256"


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
        with open(staging / WEIGHTS_FILE, "wb") as fh:
            writer = HashingWriter(fh)
            torch.save({k: v.detach().cpu() for k, v in state_dict.items()}, writer)
        payload = {"format_version": MODEL_FORMAT_VERSION, **meta, DIGESTS_KEY: {WEIGHTS_FILE: writer.hexdigest()}}
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


def read_bundle(
    dir_path: str | os.PathLike, map_location: str | None = "cpu", *, verify: bool = True
) -> tuple[dict, dict]:
    """Read a model bundle written by :func:`write_bundle`.

    Parameters
    ----------
    dir_path
        The bundle directory.
    map_location
        Passed to ``torch.load``.
    verify
        Check ``model.pt`` against the SHA-256 in ``model.json`` (bundles of format version 2
        on). ``False`` loads weights that were edited on purpose; the file is still read with
        ``weights_only=True``.

    Returns
    -------
    ``(state_dict, meta)``.

    Raises
    ------
    ModelFileError
        When a file is missing, the weights are not a plain tensor dict (a pickle that would
        run code is refused by ``weights_only=True``), ``model.pt`` is not the file that was
        saved (``verify``), or the format version is newer than this snakevi understands.
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
    # After the safe load: for a file that holds code, its refusal says more than a digest would.
    if verify:
        _verify_weights(Path(dir_path), meta)
    return state_dict, meta


def _verify_weights(directory: Path, meta: dict) -> None:
    """Raise unless ``model.pt`` has the SHA-256 that ``model.json`` recorded (format version 2 on)."""
    if meta["format_version"] < 2:
        return  # written before bundles carried a digest
    weights_path, meta_path = directory / WEIGHTS_FILE, directory / META_FILE
    digests = meta.get(DIGESTS_KEY)
    expected = digests.get(WEIGHTS_FILE) if isinstance(digests, dict) else None
    if not isinstance(expected, str):
        raise ModelFileError(
            f"{meta_path} has no SHA-256 for {WEIGHTS_FILE} ('{DIGESTS_KEY}' key), though its format_version "
            f"{meta['format_version']} requires one: the file was edited. Save the model again with "
            "model.save(), or load it with verify=False if you trust its weights."
        )
    actual = sha256_file(weights_path)
    if actual != expected:
        raise ModelFileError(
            f"{weights_path} does not match the SHA-256 recorded in {meta_path} (expected {expected}, "
            f"actual {actual}): the weights changed after the model was saved (a damaged copy, or an edit). "
            "Copy or save the model again; to load weights you changed on purpose, pass verify=False "
            "to SCVI.load or SCANVI.load."
        )
