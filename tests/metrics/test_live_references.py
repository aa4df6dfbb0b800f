"""The committed reference values are what scib-metrics and scanpy compute today, here.

``.ci/run`` reruns ``benchmarks/scib_reference.py`` (the CellBench cases) and
``benchmarks/scanpy_hvg_reference.py`` in the environment ``benchmarks/setup_scib_env.sh``
makes and points ``SNAKEVI_LIVE_REFERENCES`` at their output folder; these tests hold the
committed files (which the snakevi-side tests compare with) to those live values, so a
reference that the libraries no longer reproduce cannot stand. ``SNAKEVI_REQUIRE_REFERENCES=1``
turns the skip without that folder into a failure.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parents[1]
LIVE = os.environ.get("SNAKEVI_LIVE_REFERENCES")
if not LIVE and os.environ.get("SNAKEVI_REQUIRE_REFERENCES") == "1":
    raise RuntimeError("SNAKEVI_REQUIRE_REFERENCES=1 but SNAKEVI_LIVE_REFERENCES names no folder: run .ci/run, "
                       "or benchmarks/scib_reference.py and scanpy_hvg_reference.py with --out into one folder")
pytestmark = pytest.mark.skipif(not LIVE, reason="no live reference run (SNAKEVI_LIVE_REFERENCES unset; .ci/run sets it)")


def _read(path: Path) -> dict:
    return json.loads(path.read_text())


def test_scib_metrics_still_computes_the_committed_values():
    live = _read(Path(LIVE) / "scib_metrics_reference.json")
    committed = _read(TESTS / "metrics" / "data" / "scib_metrics_reference.json")
    assert live["versions"]["scib-metrics"] == committed["versions"]["scib-metrics"]
    assert live["cases"], "the live run scored no case"
    for case, values in live["cases"].items():
        for embedding, metrics in values["metrics"].items():
            expected = committed["cases"][case]["metrics"][embedding]
            assert metrics.keys() == expected.keys(), (case, embedding)
            for name, value in metrics.items():
                assert value == pytest.approx(expected[name], abs=1e-6), (case, embedding, name)


def test_scanpy_still_selects_the_committed_genes():
    live = _read(Path(LIVE) / "scanpy_hvg_reference.json")
    committed = {(c["dataset"], c["flavor"], c["batch_key"]): c["selected"]
                 for c in _read(TESTS / "data" / "reference" / "scanpy_hvg_reference.json")["cases"]}
    assert len(live["cases"]) == len(committed)
    for case in live["cases"]:
        assert case["selected"] == committed[(case["dataset"], case["flavor"], case["batch_key"])], case["flavor"]
