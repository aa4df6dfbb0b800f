"""Data larger than memory: the train job runs inside a memory limit smaller than its data.

``benchmarks/memory_bound.py`` (run small here) writes a tiled simulated .h5ad, registers and
prepares it, then trains once without a limit and once inside a cgroup v1 memory limit that is
well below the size of the prepared arrays, each from a cold page cache. The limited run must
finish, be charged no more than the limit, have hit it (so the limit really bounded the page
cache), have read the rows page by page (``snakevi.data.page_cache``), and give a latent representation bit-identical to the unlimited run.

The limit needs a writable cgroup v1 memory controller (root on this machine); where there is
none the test is skipped with that reason.
"""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

BENCHMARK = Path(__file__).resolve().parents[2] / "benchmarks" / "memory_bound.py"
#: About 690 MB of prepared arrays under a 448 MB limit (the train job alone needs ~270 MB anonymous).
CELLS, LIMIT_MB = 65536, 448


def _benchmark():
    spec = importlib.util.spec_from_file_location("memory_bound", BENCHMARK)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_training_on_prepared_data_larger_than_the_memory_limit(tmp_path):
    bench = _benchmark()
    try:
        bench.memory_cgroup_root()
    except bench.CgroupUnavailable as err:
        pytest.skip(f"no memory limit can be set here: {err}")
    try:
        result = bench.main(["--cells", str(CELLS), "--limit-mb", str(LIMIT_MB), "--epochs", "1",
                             "--work", str(tmp_path)])
    finally:  # pytest keeps its recent tmp folders; these two are 1.4 GB
        shutil.rmtree(tmp_path / "prepared", ignore_errors=True)
        (tmp_path / f"tiled_{CELLS}.h5ad").unlink(missing_ok=True)
    limited = result["runs"]["limited"]
    assert result["prepared_mb"] > 1.5 * LIMIT_MB
    assert limited["rc"] == 0
    assert limited["cgroup_peak_mb"] <= LIMIT_MB
    assert limited["limit_hits"] > 0, "the page cache never reached the limit: the data fitted"
    assert limited["peak_rss_anon_mb"] < LIMIT_MB
    assert result["latent_identical"]
    # The limited run read the rows page by page; the unlimited one kept the kernel's readahead.
    assert "page by page" in (tmp_path / "limited" / "train.log").read_text()
    assert "page by page" not in (tmp_path / "unlimited" / "train.log").read_text()
