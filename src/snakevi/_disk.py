"""Disk space: refuse a write that cannot fit, and say "no space left" when a write fails for it.

A full disk shows up in many disguises: ``OSError`` ENOSPC (or EDQUOT for a quota), numpy's
``OSError: 395237 requested and 116704 written`` (no errno), h5py's ``OSError``/``RuntimeError``
whose text carries HDF5's ``errno = 28``, torch's ``RuntimeError: ... unexpected pos 64 vs 0`` or
``basic_ios::clear: iostream error`` (no errno either; taken for a full disk when the filesystem
has under 1 MB left). :func:`disk_full_error` recognises them all and builds one message that
names the folder, its filesystem and about how much was needed.
"""

from __future__ import annotations

import atexit
import errno
import logging
import os
import re
import shutil
import sys
from pathlib import Path

#: errno values of "no room": the device is full, or the user's quota is.
_NO_ROOM = {errno.ENOSPC, errno.EDQUOT}
#: Texts of a failed write that carry the errno in words (HDF5) or say it plainly.
_NO_ROOM_TEXT = re.compile(r"No space left on device|Disk quota exceeded|errno = (28|122)\b")
#: Texts of a failed write without the reason: numpy's short write, torch's C++ writer.
_WRITE_FAILED = re.compile(r"\d+ requested and \d+ written|iostream error|unexpected pos \d+ vs \d+"
                           r"|PytorchStreamWriter failed|file write failed")
#: A failed write without a reason is taken for a full disk only when the filesystem is this full.
_ALMOST_FULL = 1 << 20


class DiskFullError(ValueError):
    """No space is left where a step writes; the message names the folder and the space needed.

    A ``ValueError``, like the steps' other refusals: it is logged as one line, without a traceback.
    """


def free_bytes(folder: str | os.PathLike) -> int:
    """Bytes available to this user on the filesystem holding ``folder`` (its nearest existing parent)."""
    p = Path(folder).absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    return shutil.disk_usage(p).free


def _mount_point(folder: Path) -> Path:
    p = folder.absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    while not os.path.ismount(p):
        p = p.parent
    return p


def _size(n: float) -> str:
    """Bytes for people: kB under 0.1 MB, else MB (decimal units, as ``df -H``)."""
    return f"{n / 1e3:.1f} kB" if n < 1e5 else f"{n / 1e6:.1f} MB"


def no_space_message(target: str | os.PathLike, needed: float | None, free: int | None = None, *,
                     written: int | None = None) -> str:
    """The one message of every disk-full refusal (``needed``/``written`` in bytes)."""
    target = Path(target)
    folder = target.parent
    free = free_bytes(folder) if free is None else free
    mount = _mount_point(folder)
    where = f"{folder}" if mount == folder.absolute() else f"{folder} (filesystem {mount})"
    if needed is not None:
        need = f"needed about {_size(max(needed, 1))}, {_size(free)} free"
    elif written:
        need = f"needed more than the {_size(written)} it wrote before the disk filled, {_size(free)} free"
    else:
        need = f"needed more than the {_size(free)} free"
    return (
        f"No space left on {where} to write {target.name}: {need}. {target.name} was left "
        "as it was. Free some space there (or write the results to a larger disk) and run the step again."
    )


def check_free_space(target: str | os.PathLike, needed: float | None) -> None:
    """Refuse before writing ``target`` when its filesystem has less than ``needed`` bytes free."""
    if needed is None:
        return
    free = free_bytes(Path(target).parent)
    if free < needed:
        raise DiskFullError(no_space_message(target, needed, free))


def _chain(err: BaseException):
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        yield err
        err = err.__cause__ or err.__context__


def is_disk_full(err: BaseException, folder: str | os.PathLike) -> bool:
    """Whether ``err`` (or an error it came from) says a write found no room in ``folder``."""
    for e in _chain(err):
        if isinstance(e, DiskFullError):
            return False  # already the clear error
        if isinstance(e, OSError) and e.errno in _NO_ROOM:
            return True
        text = str(e)
        if _NO_ROOM_TEXT.search(text):
            return True
        if _WRITE_FAILED.search(text):
            try:
                return free_bytes(folder) < _ALMOST_FULL
            except OSError:
                return False
    return False


def disk_full_error(err: BaseException, target: str | os.PathLike, needed: float | None,
                    written: int | None) -> DiskFullError | None:
    """The clear error for ``err`` raised while writing ``target``, or None when it is not about space."""
    if not isinstance(err, Exception) or not is_disk_full(err, Path(target).parent):
        return None
    if any("errno = " in str(e) for e in _chain(err)):
        _end_before_hdf5_crashes()
    return DiskFullError(no_space_message(target, needed, written=written))


def _exit_now() -> None:
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(1)


def _end_before_hdf5_crashes() -> None:
    """After HDF5 failed to write or close a file for lack of space, end the process ourselves.

    HDF5 keeps that file's objects open, and its own exit handler (``H5_term_library`` ->
    ``H5D_close``) then crashes with SIGSEGV: a step that reported the full disk clearly would
    still die from a signal. Python's exit handlers run before the C library's, so this one
    ends the process first, with status 1 (the step failed), once the logs are flushed.
    """
    atexit.register(_exit_now)
