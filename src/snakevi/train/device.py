"""Choosing the one device to train on, and moving minibatches there."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch

_ACCELERATORS = ("auto", "cpu", "cuda", "mps")


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def _device_index(devices) -> int:
    """The single device index that ``devices`` asks for."""
    if devices == "auto" or (isinstance(devices, int) and not isinstance(devices, bool) and devices == 1):
        return 0
    if isinstance(devices, (list, tuple)) and len(devices) == 1 and isinstance(devices[0], int) and devices[0] >= 0:
        return int(devices[0])
    raise ValueError(
        f"devices={devices!r}: snakevi trains on a single device. Pass devices='auto', devices=1 "
        "or devices=[index] (e.g. [1] for the second GPU)."
    )


def require_cuda() -> None:
    """Raise a clear error when CUDA was asked for and this torch sees none."""
    if not torch.cuda.is_available():
        raise RuntimeError(
            f"accelerator='cuda' was requested but torch {torch.__version__} sees no CUDA device "
            "(torch.cuda.is_available() is False). Use accelerator='cpu' or 'auto', or install a CUDA build of torch."
        )


def resolve_device(accelerator: str = "auto", devices="auto") -> torch.device:
    """The ``torch.device`` for ``accelerator`` (auto|cpu|cuda|mps; "gpu" means cuda) and ``devices``.

    ``"auto"`` picks CUDA, then MPS, then the CPU. Asking for an accelerator that this torch
    cannot see is an error rather than a silent fall-back to the CPU.
    """
    acc = str(accelerator).lower()
    acc = "cuda" if acc == "gpu" else acc
    if acc not in _ACCELERATORS:
        raise ValueError(f"accelerator={accelerator!r}: expected one of {list(_ACCELERATORS)} (or 'gpu' for cuda).")
    index = _device_index(devices)
    if acc == "auto":
        acc = "cuda" if torch.cuda.is_available() else "mps" if _mps_available() else "cpu"
    if acc == "cpu":
        return torch.device("cpu")
    if acc == "cuda":
        require_cuda()
        count = torch.cuda.device_count()
        if index >= count:
            raise ValueError(f"devices=[{index}]: only {count} CUDA device(s) are visible (indices 0..{count - 1}).")
        return torch.device("cuda", index)
    if not _mps_available():
        raise RuntimeError(
            f"accelerator='mps' was requested but torch {torch.__version__} cannot use Apple's MPS backend "
            "(torch.backends.mps.is_available() is False). Use accelerator='cpu' or 'auto'."
        )
    if index != 0:
        raise ValueError(f"devices=[{index}]: MPS has a single device; pass devices='auto' or 1.")
    return torch.device("mps")


def move_batch(batch, device: torch.device):
    """Copy a minibatch dict (numpy arrays or tensors) to ``device`` as tensors.

    A tuple or list of dicts (e.g. the ``(full, labelled)`` pairs of the semi-supervised
    loader) comes back as a tuple of moved dicts.
    """
    if isinstance(batch, (tuple, list)):
        return tuple(move_batch(part, device) for part in batch)
    if not isinstance(batch, Mapping):
        raise TypeError(
            f"a minibatch is a {type(batch).__name__}; loaders must yield dicts (or tuples of dicts) "
            "of numpy arrays or torch tensors."
        )
    out = {}
    for key, value in batch.items():
        if isinstance(value, np.ndarray):
            value = torch.from_numpy(value)
        elif not isinstance(value, torch.Tensor):
            raise TypeError(
                f"minibatch[{key!r}] is a {type(value).__name__}; loaders must yield dicts of numpy arrays or torch tensors."
            )
        out[key] = value.to(device, non_blocking=True)
    return out
