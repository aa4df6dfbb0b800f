"""Files the trainer writes and reads: atomic writes, and loading a training checkpoint.

A checkpoint is a plain dict saved with ``torch.save`` and read with
``torch.load(weights_only=True)``: tensors, numbers, strings, lists, tuples and dicts only, so
loading one never runs code from the file.

Beside each checkpoint, ``<name>.sha256.json`` lists the SHA-256 of the bytes written, and
loading checks it: a checkpoint damaged on disk or in a copy would otherwise resume silently
with other weights. A checkpoint without that file (older snakevi) loads as before.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from snakevi._atomic import atomic_path, write_text_atomic
from snakevi._constants import CHECKPOINT_FORMAT_VERSION
from snakevi._digest import HashingWriter, sha256_file
from snakevi._safe_load import load_error_reason

DIGEST_SUFFIX = ".sha256.json"


def digest_path(path: str | os.PathLike) -> Path:
    """The file beside checkpoint ``path`` that records its SHA-256 (``last.ckpt.sha256.json``)."""
    path = Path(path)
    return path.with_name(path.name + DIGEST_SUFFIX)


def write_checkpoint(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save(obj, path)`` atomically (temporary file, fsync, ``os.replace``), with its SHA-256 beside it.

    The digest file is rewritten twice, so that a kill at any moment leaves a checkpoint whose
    digest it lists: before the rename it lists the new file's digest and the old one's, after
    the rename only the new one's. Costs two small writes per checkpoint, no extra read.
    """
    path = Path(path)
    on_disk = _digests_of_file_on_disk(path)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            writer = HashingWriter(fh)
            torch.save(obj, writer)
            fh.flush()
            os.fsync(fh.fileno())
        digest = writer.hexdigest()
        _write_digests(path, [digest, *(d for d in on_disk if d != digest)])
    _write_digests(path, [digest])
    return path


def _write_digests(path: Path, digests: list[str]) -> None:
    write_text_atomic(digest_path(path), json.dumps({"file": path.name, "sha256": digests}))


def _recorded_digests(path: Path) -> list[str] | None:
    """The digests listed beside ``path``; None when there is no digest file; ValueError when it is unreadable."""
    side = digest_path(path)
    if not side.is_file():
        return None
    try:
        digests = json.loads(side.read_text())["sha256"]
        if not (isinstance(digests, list) and digests and all(isinstance(d, str) for d in digests)):
            raise ValueError("'sha256' is not a list of digests")
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as err:
        raise ValueError(
            f"{side}, the SHA-256 record of checkpoint {path}, is unreadable ({err}); "
            f"delete both files to train from scratch."
        ) from err
    return digests


def _digests_of_file_on_disk(path: Path) -> list[str]:
    """Digests that may be the file's now (its record), or its own digest when it has no usable record."""
    try:
        recorded = _recorded_digests(path)
    except ValueError:
        recorded = None
    if recorded is not None:
        return recorded
    return [sha256_file(path)] if path.is_file() else []


def verify_checkpoint(path: str | os.PathLike) -> None:
    """Raise ``ValueError`` unless checkpoint ``path`` has a SHA-256 its digest file lists (no digest file: pass)."""
    path = Path(path)
    recorded = _recorded_digests(path)
    if recorded is None:
        return  # written by a snakevi without checkpoint digests
    actual = sha256_file(path)
    if actual not in recorded:
        raise ValueError(
            f"checkpoint {path} is damaged: its SHA-256 is {actual}, but {digest_path(path)} records "
            f"{recorded[0]} for the file snakevi wrote (changed since: a disk or copy error, or an edit). "
            "Resuming from it would continue from other weights; delete it to train from scratch."
        )


def atomic_write_text(text: str, path: str | os.PathLike) -> Path:
    """Write ``text`` (UTF-8) to ``path`` through a temporary file and ``os.replace``."""
    return write_text_atomic(path, text)


def load_checkpoint(path: str | os.PathLike, *, verify: bool = True) -> dict[str, Any]:
    """Read a training checkpoint with ``weights_only=True`` and check its format version.

    Tensors are loaded on the CPU; ``load_state_dict`` moves them to the module's device.
    ``verify`` also checks the file against its recorded SHA-256 (:func:`verify_checkpoint`).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"checkpoint {path} does not exist; pass the path of a .ckpt file written by ModelCheckpoint."
        )
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - re-raised with the file name and what to do
        raise ValueError(
            f"checkpoint {path} could not be read as a snakevi training checkpoint ({load_error_reason(exc)}). "
            "It may be truncated or written by another program; delete it to train from scratch."
        ) from exc
    if not isinstance(ckpt, dict) or "format_version" not in ckpt:
        raise ValueError(f"checkpoint {path} is not a snakevi training checkpoint (no 'format_version' key).")
    version = ckpt["format_version"]
    if version != CHECKPOINT_FORMAT_VERSION:
        raise ValueError(
            f"checkpoint {path} has format version {version}; this snakevi reads version "
            f"{CHECKPOINT_FORMAT_VERSION}. Train from scratch or use the snakevi that wrote it."
        )
    if verify:
        verify_checkpoint(path)
    return ckpt


def check_module_state(
    path: str | os.PathLike, saved: Mapping[str, torch.Tensor], current: Mapping[str, torch.Tensor]
) -> None:
    """Raise a readable error when ``saved`` (from a checkpoint) does not fit the module's ``current`` state."""
    missing = sorted(set(current) - set(saved))
    unexpected = sorted(set(saved) - set(current))
    shapes = [
        f"{key}: checkpoint {tuple(saved[key].shape)} vs model {tuple(current[key].shape)}"
        for key in current
        if key in saved and tuple(saved[key].shape) != tuple(current[key].shape)
    ]
    problems = []
    if missing:
        problems.append(f"missing keys {missing[:5]}{' ...' if len(missing) > 5 else ''}")
    if unexpected:
        problems.append(f"unexpected keys {unexpected[:5]}{' ...' if len(unexpected) > 5 else ''}")
    if shapes:
        problems.append(f"shape mismatches [{'; '.join(shapes[:5])}{' ...' if len(shapes) > 5 else ''}]")
    if problems:
        raise ValueError(
            f"checkpoint {path} was written for another model/run: {', '.join(problems)}. "
            "Resume with the same data and model parameters, or delete the checkpoint to train from scratch."
        )
