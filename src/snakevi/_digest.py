"""SHA-256 digests of the weight and checkpoint files snakevi writes.

A digest is taken from the bytes as they go to disk (:class:`HashingWriter`), never from a
re-serialisation, and checked by reading the file back in 1 MiB chunks (:func:`sha256_file`),
so a file changed by one byte after it was written is told apart from the one snakevi wrote.
Also the digest of JSON-able values (:func:`fingerprint`), which names a training run.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import BinaryIO

_CHUNK = 1 << 20


class HashingWriter:
    """A binary file wrapper that hashes every byte written through it (``torch.save(obj, writer)``)."""

    def __init__(self, fh: BinaryIO) -> None:
        self._fh = fh
        self._hash = hashlib.sha256()

    def write(self, data) -> int:
        self._hash.update(data)
        return self._fh.write(data)

    def flush(self) -> None:
        self._fh.flush()

    def hexdigest(self) -> str:
        """SHA-256 (hex) of everything written so far."""
        return self._hash.hexdigest()


def sha256_file(path: str | os.PathLike) -> str:
    """SHA-256 (hex) of the file at ``path``, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def canonical_json(obj) -> str:
    """JSON with sorted keys and no whitespace: the form fingerprints are computed on."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False, default=str)


def fingerprint(*parts) -> str:
    """sha256 of the canonical JSON of ``parts``."""
    return hashlib.sha256(canonical_json(list(parts)).encode()).hexdigest()
