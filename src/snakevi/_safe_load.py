"""Reading torch files safely: ``weights_only=True`` and error messages without unsafe advice."""

from __future__ import annotations


def load_error_reason(err: Exception) -> str:
    """The reason ``torch.load`` gave, without its advice to retry with ``weights_only=False``.

    For a file holding code, torch's message suggests loading it unsafely; a file that needs
    that is exactly what snakevi refuses, so only the unpickler's one-line reason is kept.
    """
    text = str(err)
    for line in text.splitlines():
        if "WeightsUnpickler error:" in line:
            return line.strip()
    first = text.splitlines()[0] if text else ""
    return f"{type(err).__name__}: {first}"
