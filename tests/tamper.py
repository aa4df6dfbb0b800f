"""Damaging files the way a bad disk or copy would, for the tests of snakevi's integrity checks."""

from __future__ import annotations

import zipfile
from pathlib import Path


def flip_a_tensor_byte(path: Path) -> None:
    """Flip one bit in the middle of the largest tensor of a torch archive: torch still loads the file."""
    raw = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as zf:
        record = max((i for i in zf.infolist() if "/data/" in i.filename), key=lambda i: i.file_size)
        data = zf.read(record)
    at = raw.find(data) + len(data) // 2
    raw[at] ^= 0x01
    path.write_bytes(bytes(raw))
