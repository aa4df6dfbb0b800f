"""Atomic writes: every file or folder snakevi produces appears whole or not at all.

Outputs are written to a temporary sibling and renamed into place (``os.replace`` within one
folder is atomic), so a crash or a kill never leaves a half-written file that looks complete,
and the previous version stays intact until the new one is ready.

A temporary sibling is named ``.<name>.<host>-<pid>-<random>.tmp`` (plus any suffix a writer
adds, like ``.h5ad``). A killed job cannot remove its own, so the next write of the same output
removes those of processes that no longer run. A write that finds no room raises
:class:`DiskFullError`, with the folder and the space needed, and leaves no temporary behind.
"""

from __future__ import annotations

import contextlib
import glob
import os
import re
import shutil
import socket
import tempfile
from pathlib import Path
from typing import Callable, Iterator

from snakevi._disk import DiskFullError, check_free_space, disk_full_error

__all__ = ["DiskFullError", "atomic_path", "make_room", "remove_stale_temporaries", "temp_prefix", "write_atomic",
           "write_text_atomic"]


def _host() -> str:
    return re.sub(r"\W", "_", socket.gethostname())[:40] or "host"


def temp_prefix(target: str | os.PathLike) -> str:
    """The start of this process's temporary names beside ``target``: ``.<name>.<host>-<pid>-``."""
    return f".{Path(target).name}.{_host()}-{os.getpid()}-"


def _writer_alive(host: str | None, pid: str | None) -> bool:
    """Whether the process that made a temporary may still be writing it (same host, alive, not us)."""
    if pid is None or host != _host() or int(pid) == os.getpid():
        return False  # older naming, another machine (cannot be checked), or a former process with our pid
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def remove_stale_temporaries(target: str | os.PathLike) -> list[Path]:
    """Remove the temporaries (and moved-aside old versions) that killed writes of ``target`` left.

    Matches ``.<name>.[<host>-<pid>-]<random>.tmp[<suffix>]``, ``.<name>.<...>.old`` and the older
    ``.<name>.old-<pid>``; one of a process still running on this machine is kept (it may be a
    write in progress).
    """
    target = Path(target)
    pattern = re.compile(rf"\.{re.escape(target.name)}\.(?:(?:(\w+)-(\d+)-)?\w+\.(?:tmp(?:\..*)?|old)|old-\d+)")
    removed = []
    with contextlib.suppress(FileNotFoundError):
        for sibling in target.parent.iterdir():
            m = pattern.fullmatch(sibling.name)
            if m and not _writer_alive(m.group(1), m.group(2)):
                _remove(sibling)
                removed.append(sibling)
    return removed


def make_room(target: str | os.PathLike, needed_bytes: float | None = None) -> None:
    """Before writing ``target``: remove stale temporaries of it, then refuse if ``needed_bytes`` cannot fit."""
    remove_stale_temporaries(target)
    check_free_space(target, needed_bytes)


def _bytes_under(path: Path) -> int:
    try:
        if path.is_dir():
            return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
        return path.stat().st_size if path.exists() else 0
    except OSError:
        return 0


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, needed_bytes: float | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds.

    Works for files and folders: whatever the block creates at the temporary path replaces
    ``path`` (an existing folder is moved aside first and removed after the swap). On error
    the temporary path (and any ``<temporary><suffix>`` the block made beside it) is removed
    and ``path`` is left as it was. Stale temporaries of killed writes of ``path`` are removed
    first.

    Parameters
    ----------
    path
        The file or folder to write.
    needed_bytes
        About how many bytes the write takes, when known: refused up front with
        :class:`DiskFullError` if the filesystem has less free. Without it, a write that runs
        out of space still raises :class:`DiskFullError` (translated from the ``OSError``,
        numpy's short write or h5py's and torch's errors).
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    make_room(target, needed_bytes)
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=temp_prefix(target), suffix=".tmp", dir=target.parent)
    except OSError as err:  # a full directory block or no inode left
        clear = disk_full_error(err, target, needed_bytes, 0)
        if clear is not None:
            raise clear from err
        raise
    os.close(fd)
    tmp = Path(tmp_name)
    tmp.unlink()  # the block decides whether it writes a file or a folder here
    try:
        yield tmp
        if not tmp.exists():
            raise RuntimeError(f"internal error: nothing was written for {target}")
        backup = None
        if target.is_dir() and not target.is_symlink():
            backup = tmp.with_name(tmp.name[: -len(".tmp")] + ".old")
            os.replace(target, backup)
        os.replace(tmp, target)
        if backup is not None:
            shutil.rmtree(backup, ignore_errors=True)
    except BaseException as err:
        # Judged before the partial write is removed: then the filesystem is as full as the write found it.
        clear = disk_full_error(err, target, needed_bytes, _bytes_under(tmp))
        for leftover in [tmp, *tmp.parent.glob(f"{glob.escape(tmp.name)}.*")]:
            _remove(leftover)
        if clear is not None:
            raise clear from err
        raise


def write_atomic(path: str | os.PathLike, write: Callable, *, needed_bytes: float | None = None) -> Path:
    """Call ``write(binary_file)`` on a temporary file, fsync it, then rename it onto ``path``.

    ``needed_bytes``: about how much ``write`` writes, if known (see :func:`atomic_path`).
    """
    with atomic_path(path, needed_bytes=needed_bytes) as tmp:
        with open(tmp, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
    return Path(path)


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically (refused up front when it cannot fit)."""
    data = text.encode("utf-8")
    return write_atomic(path, lambda fh: fh.write(data), needed_bytes=len(data))
