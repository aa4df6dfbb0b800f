"""Training precision, as Lightning's ``Trainer(precision=...)`` names it.

``"32"`` (``"32-true"``, ``32``) trains in float32, as before. ``"bf16-mixed"`` runs each
training and validation forward under ``torch.autocast`` with bfloat16: matrix products in
bfloat16, the likelihood (lgamma, digamma, log) and the weights, gradients and optimizer state in
float32. ``"16-mixed"`` does the same with float16, CUDA only, with a gradient scaler (float16
underflows without one); its scale is saved in checkpoints. ``"bf16"`` and ``16`` are Lightning's
older spellings of the two.

A precision the device cannot run (``"16-mixed"`` on the CPU, bfloat16 on a GPU without it)
is refused when the trainer is built, before any data is read.
"""

from __future__ import annotations

from contextlib import nullcontext

import torch

#: Lightning's names (and its legacy spellings) -> ours.
_ALIASES = {
    "32": "32", "32-true": "32", 32: "32",
    "bf16-mixed": "bf16-mixed", "bf16": "bf16-mixed",
    "16-mixed": "16-mixed", "16": "16-mixed", 16: "16-mixed",
}
PRECISIONS = ("32", "bf16-mixed", "16-mixed")


def resolve_precision(precision, device: torch.device) -> str:
    """The canonical name of ``precision`` on ``device``; ``ValueError`` naming the fix if it cannot run there."""
    key = precision.lower() if isinstance(precision, str) else precision
    if isinstance(key, bool) or key not in _ALIASES:
        raise ValueError(
            f"precision={precision!r}: expected one of {list(PRECISIONS)} (Lightning's names; "
            "'32-true', 'bf16' and 16 are accepted as well)."
        )
    name = _ALIASES[key]
    if name == "16-mixed" and device.type != "cuda":
        raise ValueError(
            f"precision='16-mixed' needs a CUDA GPU; this run trains on {device.type!r}. "
            "Use precision='bf16-mixed' (mixed precision on the CPU) or '32'."
        )
    if name == "bf16-mixed" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ValueError(
            f"precision='bf16-mixed': {torch.cuda.get_device_name(device)} has no bfloat16 support. "
            "Use precision='16-mixed' on this GPU, or '32'."
        )
    if name != "32" and device.type == "mps":
        raise ValueError(f"precision={precision!r} is not supported on MPS here; use precision='32'.")
    return name


def autocast(name: str, device: torch.device):
    """The context a forward pass runs in for precision ``name`` (a no-op for ``"32"``)."""
    if name == "32":
        return nullcontext()
    dtype = torch.bfloat16 if name == "bf16-mixed" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def grad_scaler(name: str, device: torch.device):
    """A ``torch.amp.GradScaler`` for float16 training, else None (bfloat16 and float32 need none)."""
    if name != "16-mixed":
        return None
    return torch.amp.GradScaler(device.type)
