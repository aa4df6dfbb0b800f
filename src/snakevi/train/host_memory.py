"""Keep freed host memory for reuse while training, instead of returning it to the kernel.

torch allocates each CPU tensor with ``malloc``, and glibc serves blocks above its mmap
threshold (128 KiB to start, raised as blocks are freed) with a fresh ``mmap`` and gives the
top of the heap back once more than 128 KiB is free there. A training step makes and frees the
same large activations every time (1 MiB each at 128 cells x 2,000 genes, 8 MiB at 1,024), so
each step faults their pages in again: 15,000-19,000 page faults per step at batch 1,024 on this
project's benchmark, about a quarter of the step's time, and 200-400 at batch 128.

Two ``mallopt`` settings make the heap keep them: blocks up to 32 MiB (glibc's largest mmap
threshold on 64-bit systems) come from the heap, and the heap is trimmed only once 1 GiB at its
top is free. The process then stays near its peak memory instead of dropping between steps;
its peak is unchanged. Values are unchanged too: torch aligns its allocations to 64 bytes
either way, so the kernels take the same paths (``tests/train/test_host_memory.py``).

Process-wide and permanent, applied once when a trainer starts fitting; a no-op where the C
library is not glibc. ``SNAKEVI_KEEP_FREED_MEMORY=0`` turns it off.
"""

from __future__ import annotations

import ctypes
import logging
import os

log = logging.getLogger(__name__)

#: glibc's ``mallopt`` parameters (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
#: Blocks up to this size come from the heap: glibc's maximum on 64-bit systems.
MMAP_THRESHOLD = 32 * 2**20
#: Free memory at the heap's top kept before trimming it.
TRIM_THRESHOLD = 2**30
#: Environment variable that turns the setting off when "0".
ENV_SWITCH = "SNAKEVI_KEEP_FREED_MEMORY"

_applied: bool | None = None  # None: not tried yet


def _glibc():
    """The process's C library if it is glibc (it has ``gnu_get_libc_version``), else ``None``."""
    try:
        libc = ctypes.CDLL(None)  # the symbols already loaded, the interpreter's C library among them
    except (OSError, TypeError):  # TypeError: Windows has no such handle
        return None
    return libc if hasattr(libc, "gnu_get_libc_version") and hasattr(libc, "mallopt") else None


def keep_freed_host_memory() -> bool:
    """Apply the two ``mallopt`` settings once per process; whether they are in effect."""
    global _applied
    if _applied is not None:
        return _applied
    _applied = False
    if os.environ.get(ENV_SWITCH, "1").strip() == "0":
        log.debug("%s=0: host memory is returned to the kernel as glibc decides.", ENV_SWITCH)
        return _applied
    libc = _glibc()
    if libc is None:
        return _applied
    libc.mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    # mallopt returns 1 on success; the mmap threshold first, as it also stops glibc moving it.
    _applied = bool(libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    if _applied:
        log.debug("Freed host memory blocks up to %d MiB are kept for reuse (glibc mallopt).", MMAP_THRESHOLD >> 20)
    return _applied
