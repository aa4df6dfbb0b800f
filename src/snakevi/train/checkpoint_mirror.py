"""Keep a checkpoint folder mirrored in an object store, so a preempted job resumes on another node.

:meth:`CheckpointMirror.pull` runs before training: on a node whose folder holds no
``last.ckpt`` (a fresh cloud node) it downloads the stored one, which the recipe then resumes
from exactly as from a local one (same fingerprint check, same digests). :meth:`snapshot` runs
in the training loop right after each checkpoint is written: it only opens the folder's files
(an open file keeps its content even when the next checkpoint replaces it) and hands them to a
background thread, which uploads what changed and then the manifest
(:mod:`snakevi.train.checkpoint_store`). Training goes on meanwhile; a snapshot taken while an
upload runs waits, and only the newest waiting one is kept. :meth:`close` waits for the
upload in flight (after the last epoch, a SIGTERM stop or a failure), so the newest checkpoint is
stored before the job ends.

An upload that fails is logged and training goes on: the store then holds the previous
checkpoint, and a preempted job resumes from there (losing more epochs, never correctness).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from snakevi._atomic import atomic_path
from snakevi.train.checkpoint_store import CheckpointStoreError

log = logging.getLogger(__name__)

#: How long :meth:`CheckpointMirror.close` waits for the upload in flight by default.
CLOSE_TIMEOUT_SECONDS = 300.0


@dataclass
class UploadTimes:
    """What the uploads cost, for the log and for benchmarks/checkpoint_upload.py."""

    snapshot_seconds: list[float] = field(default_factory=list)  # in the training loop
    upload_seconds: list[float] = field(default_factory=list)  # in the background, per stored checkpoint
    uploaded_bytes: list[int] = field(default_factory=list)
    failures: int = 0


class CheckpointMirror:
    """Mirror of the checkpoint folder ``local_dir`` in ``store``.

    Parameters
    ----------
    local_dir
        The run's checkpoint folder on this node.
    store
        Where it is mirrored (:func:`snakevi.train.checkpoint_store.open_store`).
    """

    def __init__(self, local_dir: str | os.PathLike, store) -> None:
        self.local_dir = Path(local_dir)
        self.store = store
        self.times = UploadTimes()
        self._stored: dict[str, dict] = {}  # path in the folder -> {"key", "sha256", "size"} as stored
        self._pending: dict | None = None
        self._busy = False
        self._closing = False
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None

    # -- before training ---------------------------------------------------------------------

    def pull(self) -> bool:
        """Download the stored checkpoint folder unless this node has a checkpoint; whether it did.

        A local ``last.ckpt`` is kept: it is this node's own, at least as new as what it uploaded
        (and any checkpoint of the run resumes to the same result).
        """
        manifest = self.store.read_manifest()
        if manifest is not None:
            self._stored = dict(manifest["files"])
        if manifest is None or (self.local_dir / "last.ckpt").is_file():
            return False
        files = manifest["files"]
        # Digest records first: a kill mid-pull then leaves no checkpoint without its digest.
        order = sorted(files, key=lambda name: (not name.endswith(".sha256.json"), name))
        for name in order:
            target = self.local_dir / name
            target.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(target) as tmp:
                with open(tmp, "wb") as fh:
                    self.store.download(files[name]["key"], fh)
                if _sha256_path(tmp) != files[name]["sha256"]:
                    raise CheckpointStoreError(
                        f"{self.store.url}/{files[name]['key']} does not have the SHA-256 that "
                        f"{self.store.url}/manifest.json records for {name} (changed in the store); delete the "
                        f"prefix {self.store.url}/ to train from scratch."
                    )
        log.info("checkpoint (%s) retrieved from %s", _describe(manifest), self.store.url)
        return True

    # -- during training ---------------------------------------------------------------------

    def snapshot(self, **info) -> None:
        """Queue the folder as it is now for upload (call right after a checkpoint is written).

        ``info`` (e.g. ``phase="scvi", epoch=12``) goes into the manifest, for people and logs.
        """
        started = time.perf_counter()
        opened = {}
        for path in sorted(self.local_dir.rglob("*")):
            rel = path.relative_to(self.local_dir)
            # Temporaries and lock files of the atomic writes start with a dot: never stored.
            if any(part.startswith(".") for part in rel.parts) or not path.is_file():
                continue
            with contextlib.suppress(FileNotFoundError):
                opened[rel.as_posix()] = open(path, "rb")
        with self._cond:
            if self._pending is not None:
                _close_all(self._pending["files"])
            self._pending = {"files": opened, "info": info}
            self._start_thread()
            self._cond.notify_all()
        self.times.snapshot_seconds.append(time.perf_counter() - started)

    def close(self, timeout: float = CLOSE_TIMEOUT_SECONDS) -> bool:
        """Wait (up to ``timeout`` s) until the newest snapshot is stored; whether it was."""
        deadline = time.monotonic() + timeout
        with self._cond:
            self._closing = True
            self._cond.notify_all()
            while (self._pending is not None or self._busy) and self._thread is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    log.warning("checkpoint upload to %s still running after %.0f s; the job ends without it, "
                                "a restart resumes from the checkpoint stored before", self.store.url, timeout)
                    return False
                self._cond.wait(left)
        if self._thread is not None:
            self._thread.join(timeout=max(0.0, deadline - time.monotonic()))
        if self.times.upload_seconds:
            times = sorted(self.times.upload_seconds)
            log.info("stored %d checkpoints in %s (upload median %.2f s, max %.2f s; %.1f MB each; training "
                     "waited %.1f ms per checkpoint)", len(times), self.store.url, times[len(times) // 2], times[-1],
                     max(self.times.uploaded_bytes) / 1e6,
                     1e3 * sum(self.times.snapshot_seconds) / max(1, len(self.times.snapshot_seconds)))
        return self.times.failures == 0

    # -- the upload thread -------------------------------------------------------------------

    def _start_thread(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._upload_loop, name="checkpoint-upload", daemon=True)
            self._thread.start()

    def _upload_loop(self) -> None:
        while True:
            with self._cond:
                while self._pending is None and not self._closing:
                    self._cond.wait()
                if self._pending is None:
                    return
                snap, self._pending, self._busy = self._pending, None, True
            try:
                self._upload(snap)
            except Exception as err:  # noqa: BLE001 - an upload must never stop the training
                self.times.failures += 1
                log.warning("could not store the checkpoint (%s) in %s (%s); training goes on, a restart would "
                            "resume from the checkpoint stored before", _describe(snap["info"]), self.store.url, err)
            finally:
                _close_all(snap["files"])
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def _upload(self, snap: dict) -> None:
        started = time.perf_counter()
        files, sent = {}, 0
        for name, fh in snap["files"].items():
            # One read of the file: the bytes sent are the bytes hashed, even if a writer changed
            # the file in place meanwhile (snakevi's own writers replace files, never rewrite them).
            with _copy_of(fh) as (copy, sha, size):
                known = self._stored.get(name)
                if known is not None and known["sha256"] == sha:
                    files[name] = known
                    continue
                key = f"files/{name}.{sha[:16]}"
                self.store.upload(copy, key)
            files[name] = {"key": key, "sha256": sha, "size": size}
            sent += size
        self.store.write_manifest({**snap["info"], "files": files})
        self._stored = files
        self.store.delete_files_except({entry["key"] for entry in files.values()})
        self.times.upload_seconds.append(time.perf_counter() - started)
        self.times.uploaded_bytes.append(sent)


def _describe(info: dict) -> str:
    return ", ".join(f"{k} {v}" for k, v in info.items() if k not in ("files", "format")) or "no details"


def _sha256_file(fh) -> tuple[str, int]:
    fh.seek(0)
    digest, size = hashlib.sha256(), 0
    for block in iter(lambda: fh.read(1 << 20), b""):
        digest.update(block)
        size += len(block)
    return digest.hexdigest(), size


@contextlib.contextmanager
def _copy_of(fh):
    """``(copy, sha256, size)`` of the open file ``fh``: a temporary copy (in memory up to 64 MB)."""
    fh.seek(0)
    digest, size = hashlib.sha256(), 0
    with tempfile.SpooledTemporaryFile(max_size=64 << 20) as copy:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
            copy.write(block)
            size += len(block)
        copy.seek(0)
        yield copy, digest.hexdigest(), size


def _sha256_path(path) -> str:
    with open(path, "rb") as fh:
        return _sha256_file(fh)[0]


def _close_all(files: dict) -> None:
    for fh in files.values():
        fh.close()
