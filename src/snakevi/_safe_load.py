"""Reading torch and numpy files safely, with refusals that say why and never advise unsafe loading.

snakevi reads weights and checkpoints with ``torch.load(weights_only=True)`` and arrays with
``np.load(allow_pickle=False)``, so a file that holds code is refused before any of it runs.
The libraries' own messages then suggest loading the file unsafely (``weights_only=False``,
``add_safe_globals``, ``allow_pickle=True``): a file that needs that is exactly what snakevi
refuses, so the messages here keep only what was refused and why.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

# The unpickler's own reasons (torch's _weights_only_unpickler), newest wording first; each
# becomes one sentence naming what the file asked for.
_TORCH_REASONS = (
    (re.compile(r"GLOBAL (\S+) whose module (\S+) is blocked"),
     "Unsupported global {0}: the file calls into module {1}, which can run commands or code"),
    (re.compile(r"GLOBAL (\S+) was not an allowed global"),
     "Unsupported global {0}: the file names a Python function or class, which a file of plain tensors never does"),
    (re.compile(r"Unsupported operand (\d+)"),
     "Unsupported pickle opcode {0}: the file is not a torch.save archive of tensors (a raw pickle "
     "stream, or not a torch file at all), so it was not unpickled"),
    (re.compile(r"Trying to call reduce for unrecognized function (.+?)(?: which belongs to|$)", re.M),
     "the file calls the function {0}, which a file of plain tensors never does"),
    (re.compile(r"Can only create new object for .*? but got (.+)$", re.M),
     "the file builds an object of {0}, which a file of plain tensors never holds"),
)
# Sentences of torch's message that are advice or boilerplate, not the reason.
_ADVICE = re.compile(
    r"weights_only\W+(set to\W+)?False|safe_globals|trust|file an issue|Check the documentation|"
    r"PyTorch 2\.6|Weights only load failed|two options|recommended steps|allow_pickle|unsafe",
    re.IGNORECASE,
)


def load_error_reason(err: Exception) -> str:
    """What ``torch.load(weights_only=True)`` refused and why, in one line without unsafe advice.

    For a file that names a Python global (``os.system``, ``builtins.open``, a class), the
    global is named; for a raw pickle stream, the unpickler's reason (the unsupported opcode)
    is kept; torch's advice to retry with ``weights_only=False`` or to allowlist the global is
    always dropped. Other errors (a truncated archive, a file that is not torch's) keep the
    sentences of their message that are not such advice.
    """
    text = str(err)
    for pattern, template in _TORCH_REASONS:
        match = pattern.search(text)
        if match:
            return template.format(*(group.strip() for group in match.groups()))
    sentences = (s.strip() for s in re.split(r"(?<=[.!?])\s+|\n+", text))
    kept = [s for s in sentences if s and not _ADVICE.search(s)]
    detail = " ".join(kept[:2]) or "no further detail"
    return f"{type(err).__name__}: {detail}"


def load_npy(path: str | os.PathLike, *, mmap_mode: str | None = None, fix: str):
    """``np.load(path, allow_pickle=False)`` that accepts only a plain ``.npy`` array.

    Parameters
    ----------
    path
        The ``.npy`` file.
    mmap_mode
        Passed to ``np.load`` (``"r"`` maps the file instead of reading it).
    fix
        What the user should do when the file is refused (e.g. ``"Run the prepare step again."``).

    Raises
    ------
    ValueError
        Naming the file, what it holds instead of an array and ``fix``; nothing in it is unpickled.
    """
    import numpy as np

    path = Path(path)
    try:
        array = np.load(path, mmap_mode=mmap_mode, allow_pickle=False)
    except ValueError as err:
        # numpy's messages here advise allow_pickle=True; say what the file holds instead.
        text = str(err)
        if "pickled" in text:
            what = "it holds pickled Python objects (or is not a .npy file at all)"
        elif "Object arrays" in text or "Python objects" in text:
            what = "it is an array of Python objects, which only unpickling could load"
        else:
            detail = " ".join(s for s in re.split(r"(?<=[.!?])\s+", text) if not _ADVICE.search(s))
            raise ValueError(f"{path} could not be read as a .npy array ({detail or 'no detail'}). {fix}") from err
        raise ValueError(f"{path} was refused: {what}, not a plain numeric .npy array; nothing in it was run. "
                         f"{fix}") from err
    if not isinstance(array, np.ndarray):
        # np.load opens a zip file (a torch.save archive, an .npz) lazily instead of refusing it.
        close = getattr(array, "close", None)
        if close is not None:
            close()
        raise ValueError(f"{path} was refused: it is a zip archive (an .npz or a torch.save file), "
                         f"not a plain numeric .npy array. {fix}")
    return array
