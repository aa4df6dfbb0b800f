"""Prepared arrays larger than the memory available are read page by page (MADV_RANDOM)."""

from __future__ import annotations

import numpy as np
import pytest

from snakevi.data import page_cache


@pytest.fixture
def mapped(tmp_path):
    path = tmp_path / "values.npy"
    np.save(path, np.arange(1 << 16, dtype=np.float32))
    return np.load(path, mmap_mode="r")


def _random_read(array) -> bool:
    """Whether the kernel marks the mapping holding ``array`` random-read ("rr" in smaps)."""
    address, inside = array.ctypes.data, False
    for line in open("/proc/self/smaps"):
        head = line.split()[0]
        if "-" in head and ":" not in head:
            lo, hi = (int(x, 16) for x in head.split("-"))
            inside = lo <= address < hi
        elif inside and head == "VmFlags:":
            return "rr" in line.split()[1:]
    raise AssertionError("mapping not found in /proc/self/smaps")


def _advise(monkeypatch, arrays, available):
    monkeypatch.setattr(page_cache, "available_memory_bytes", lambda: available)
    return page_cache.advise_random_access(arrays, "prepared")


def test_arrays_larger_than_available_memory_are_advised_random(monkeypatch, mapped, caplog):
    caplog.set_level("INFO", logger="snakevi.data.page_cache")
    assert not _random_read(mapped)
    assert _advise(monkeypatch, [mapped, mapped], available=mapped.nbytes)
    assert _random_read(mapped)
    assert "page by page" in caplog.text


def test_arrays_that_fit_keep_the_kernel_readahead(monkeypatch, mapped):
    assert not _advise(monkeypatch, [mapped, mapped], available=2 * mapped.nbytes)
    assert not _random_read(mapped)


def test_arrays_in_memory_are_never_advised(monkeypatch, mapped):
    assert not _advise(monkeypatch, [np.array(mapped)], available=0)


def test_available_memory_is_at_most_what_the_kernel_reports():
    meminfo = dict(line.split(":", 1) for line in open("/proc/meminfo"))
    assert 0 < page_cache.available_memory_bytes() <= int(meminfo["MemAvailable"].split()[0]) * 1024
