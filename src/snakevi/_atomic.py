"""Atomic writes: every file or folder snakevi produces appears whole or not at all.

Outputs are written to a temporary sibling and renamed into place (``os.replace`` within one
folder is atomic), so a crash or a kill never leaves a half-written file that looks complete,
and the previous version stays intact until the new one is ready.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable, Iterator


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds.

    Works for files and folders: whatever the block creates at the temporary path replaces
    ``path`` (an existing folder is moved aside first and removed after the swap). On error
    the temporary path is removed and ``path`` is left as it was.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    tmp.unlink()  # the block decides whether it writes a file or a folder here
    try:
        yield tmp
        if not tmp.exists():
            raise RuntimeError(f"internal error: nothing was written for {target}")
        backup = None
        if target.is_dir() and not target.is_symlink():
            backup = target.with_name(f".{target.name}.old-{os.getpid()}")
            os.replace(target, backup)
        os.replace(tmp, target)
        if backup is not None:
            shutil.rmtree(backup, ignore_errors=True)
    except BaseException:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
        raise


def write_atomic(path: str | os.PathLike, write: Callable) -> Path:
    """Call ``write(binary_file)`` on a temporary file, fsync it, then rename it onto ``path``."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
    return Path(path)


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return write_atomic(path, lambda fh: fh.write(text.encode("utf-8")))
