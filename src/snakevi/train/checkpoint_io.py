"""Files the trainer writes and reads: atomic writes, and loading a training checkpoint.

A checkpoint is a plain dict saved with ``torch.save`` and read with
``torch.load(weights_only=True)``: tensors, numbers, strings, lists, tuples and dicts only, so
loading one never runs code from the file.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from snakevi._atomic import write_atomic, write_text_atomic
from snakevi._constants import CHECKPOINT_FORMAT_VERSION
from snakevi._safe_load import load_error_reason


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save(obj, path)`` through a temporary file and ``os.replace``."""
    return write_atomic(path, lambda f: torch.save(obj, f))


def atomic_write_text(text: str, path: str | os.PathLike) -> Path:
    """Write ``text`` (UTF-8) to ``path`` through a temporary file and ``os.replace``."""
    return write_text_atomic(path, text)


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read a training checkpoint with ``weights_only=True`` and check its format version.

    Tensors are loaded on the CPU; ``load_state_dict`` moves them to the module's device.
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
