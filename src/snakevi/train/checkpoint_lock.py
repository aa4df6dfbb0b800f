"""One trainer per checkpoint folder: an exclusive ``flock`` held for the life of a train job.

After ``snakemake`` itself is killed, its train job goes on; ``--unlock`` + ``--rerun-incomplete``
would then start a second trainer on the same checkpoints (resuming from, or moving aside, the
folder the first one is writing). The lock file sits beside the folder (``.<folder>.lock``), so
moving the folder to ``.stale`` or removing it when no epoch completed leaves the lock alone.
It holds the holder's pid, host and start time for the refusal message. The kernel drops the
lock when its process dies, however it dies, so a rerun after a kill gets it; a lock file left
by a killed trainer is simply taken over. On NFS, Linux maps ``flock`` to a lock the server
sees, so two nodes of a cluster exclude each other too.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import time
from pathlib import Path
from typing import Iterator

from snakevi._disk import disk_full_error

log = logging.getLogger(__name__)


class CheckpointFolderBusy(ValueError):
    """Another process holds the lock of the checkpoint folder: this run stopped before touching it.

    A ``ValueError``, like the steps' input errors: the command exits 1 and logs it without a traceback.
    """


def lock_path(folder: str | os.PathLike) -> Path:
    """The lock file of ``folder``: ``.<name>.lock`` beside it."""
    folder = Path(folder)
    return folder.with_name(f".{folder.name}.lock")


def _holder(fd: int) -> str:
    try:
        info = json.loads(os.pread(fd, 4096, 0).decode() or "{}")
    except (OSError, ValueError):
        info = {}
    if "pid" not in info:
        return "another process (it has not written its pid yet)"
    return f"process {info['pid']} on {info.get('host', '?')}, started {info.get('started', '?')}"


@contextlib.contextmanager
def hold_checkpoint_folder(folder: str | os.PathLike) -> Iterator[Path]:
    """Hold the exclusive lock of the checkpoint ``folder`` for the block; refuse at once if taken.

    Raises
    ------
    CheckpointFolderBusy
        Another trainer holds it; the message names that process and what to do.
    """
    try:
        import fcntl
    except ImportError:  # Windows: no flock; snakemake's own lock is all there is
        yield lock_path(folder)
        return
    folder = Path(folder)
    path = lock_path(folder)
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            clear = disk_full_error(err, path, None, 0)
            if clear is not None:
                raise clear from err
            raise
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            raise CheckpointFolderBusy(
                f"Another trainer is using the checkpoint folder {folder}: {holder} holds its lock {path}. "
                "Two trainers would overwrite each other's checkpoints, so this one stopped and changed "
                "nothing. Wait for the other to finish (after a killed snakemake its train job goes on: "
                "its log shows how far it is), or stop it, then run again (with the same settings it "
                "resumes from the last checkpoint)."
            ) from None
        except OSError as err:  # e.g. ENOLCK on an NFS mount without locking: train, unguarded
            os.close(fd)
            log.warning("cannot lock %s (%s): a second trainer on %s would not be stopped", path, err, folder)
            yield path
            return
        # A holder that was releasing may have removed the file between our open and flock: then
        # the lock is on a file nobody else will find; start over on the current one.
        try:
            current = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            current = False
        if current:
            break
        os.close(fd)
    try:
        info = {"pid": os.getpid(), "host": socket.gethostname(),
                "started": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
        # Only for the message of a second trainer: a full disk must not stop the lock (training
        # then reports the full disk at its first write, with the space it needed).
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
            os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)
        yield path
    finally:
        # Removed while still held, so no one takes a lock on a file about to disappear.
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        os.close(fd)
