"""How memory-mapped training data is read when it does not fit in memory.

Training gathers each minibatch as a few hundred random rows of the memory-mapped CSR arrays.
On a page fault the kernel reads around the faulting page ("readaround", as large as the
disk's ``read_ahead_kb``: 8 MB on this project's machines). While the arrays fit in the page
cache that warms the cache fast and costs nothing. When they do not fit (a memory limit set by
SLURM, a container or a cgroup, or data larger than RAM), every row fault reads megabytes that
evict the rows of the same minibatch before they are used, and the job thrashes without end.
So arrays larger than the memory available are advised ``MADV_RANDOM``: each fault reads only
the page it needs, and resident memory stays bounded by the limit at a bounded cost in speed
(``benchmarks/memory_bound.py`` measures both).
"""

from __future__ import annotations

import logging
import mmap
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

#: cgroup v1 reports "no limit" as a huge number near 2**63.
_NO_LIMIT = 1 << 60


def available_memory_bytes() -> int:
    """Memory this process can still fill: the least of ``MemAvailable`` and its cgroup's room.

    The cgroup room is ``limit - usage`` of the memory cgroup (v1 or v2) and of every ancestor
    that has a limit, as the tightest one is what the kernel enforces.
    """
    available = _meminfo_available()
    for limit, usage in _cgroup_limits():
        if limit < _NO_LIMIT:
            available = min(available, max(0, limit - usage))
    return available


def advise_random_access(arrays, what: str) -> bool:
    """Advise ``MADV_RANDOM`` on memory-mapped ``arrays`` when together they exceed available memory.

    Parameters
    ----------
    arrays
        numpy arrays; only memory-mapped ones (``np.memmap``) count and are advised.
    what
        Name of the data for the log line (e.g. the prepared folder).

    Returns
    -------
    bool
        Whether the arrays were advised.
    """
    mapped = [a for a in arrays if isinstance(a, np.memmap) and getattr(a, "_mmap", None) is not None]
    size = sum(a.nbytes for a in mapped)
    if not mapped or not hasattr(mmap, "MADV_RANDOM"):
        return False
    available = available_memory_bytes()
    if size <= available:
        return False
    for a in mapped:
        a._mmap.madvise(mmap.MADV_RANDOM)
    log.info("%s: %d MB of counts, %d MB of memory available: reading minibatch rows page by page "
             "(no readahead), so memory stays within the limit", what, size >> 20, available >> 20)
    return True


def _meminfo_available() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return _NO_LIMIT


def _cgroup_limits() -> list[tuple[int, int]]:
    """``(limit, usage)`` in bytes of this process's memory cgroup and its ancestors."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return []
    found = []
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(","):  # v1: a memory hierarchy of its own
            root, limit_file, usage_file = Path("/sys/fs/cgroup/memory"), "memory.limit_in_bytes", "memory.usage_in_bytes"
        elif controllers == "":  # v2: one unified hierarchy
            root, limit_file, usage_file = Path("/sys/fs/cgroup"), "memory.max", "memory.current"
        else:
            continue
        folder = root / path.lstrip("/")
        while True:
            pair = _read_pair(folder / limit_file, folder / usage_file)
            if pair is not None:
                found.append(pair)
            if folder == root or root not in folder.parents:
                break
            folder = folder.parent
    return found


def _read_pair(limit_path: Path, usage_path: Path) -> tuple[int, int] | None:
    try:
        limit_text, usage_text = limit_path.read_text().strip(), usage_path.read_text().strip()
    except OSError:
        return None
    limit = _NO_LIMIT if limit_text == "max" else int(limit_text)
    return limit, int(usage_text)
