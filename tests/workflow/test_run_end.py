"""workflow/rules/run_end.smk: the snakemake process does not wait on the rate limiter's timer.

A tiny workflow includes the hooks and records, from inside the real snakemake process, the
timers Snakemake starts and the ones the hooks cancel; an atexit handler writes the record.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from wf_helpers import REPO, snakemake

RECORDING_SNAKEFILE = f"""\
import atexit
import gc
import json
import threading

_record = {{"started": [], "cancelled": []}}
_start, _cancel = threading.Timer.start, threading.Timer.cancel


def _recording_start(timer):
    _record["started"].append(timer.function.__module__)
    _start(timer)


def _recording_cancel(timer):
    _record["cancelled"].append([timer.function.__module__, timer.finished.is_set()])
    _cancel(timer)


threading.Timer.start, threading.Timer.cancel = _recording_start, _recording_cancel


@atexit.register
def _write_record():
    _record["gc_frozen"] = gc.get_freeze_count()
    with open("record.json", "w") as f:
        json.dump(_record, f)


include: "{REPO / 'workflow' / 'rules' / 'run_end.smk'}"


rule all:
    output:
        "done.txt",
    shell:
        "echo done > {{output}} && exit $FAIL"
"""


# A Python session that runs the workflow through Snakemake's API and carries on afterwards.
API_HOST = """\
from pathlib import Path

from snakemake.api import SnakemakeApi
from snakemake.settings.types import OutputSettings, ResourceSettings

with SnakemakeApi(OutputSettings()) as api:
    workflow = api.workflow(resource_settings=ResourceSettings(cores=1), snakefile=Path("Snakefile"),
                            workdir=Path("."))
    workflow.dag().execute_workflow(executor="local")
"""


def _run(tmp_path, *args, fail=False, launcher="snakemake"):
    """Run the recording workflow; return what its snakemake process recorded."""
    (tmp_path / "Snakefile").write_text(RECORDING_SNAKEFILE)
    env = {"FAIL": "1" if fail else "0"}
    if launcher == "snakemake":
        proc = snakemake(tmp_path, "--cores", "1", *args, check=False, snakefile=tmp_path / "Snakefile", env=env)
    else:
        cmd = [sys.executable, "-m", "snakemake", "--cores", "1", *args] if launcher == "python -m" else \
            [sys.executable, "-c", API_HOST]
        proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300, env={**os.environ, **env})
    assert proc.returncode == (1 if fail else 0), proc.stderr[-3000:]
    return json.loads((tmp_path / "record.json").read_text())


@pytest.mark.parametrize("launcher", ["snakemake", "python -m"])
@pytest.mark.parametrize("fail", [False, True], ids=["onsuccess", "onerror"])
def test_the_hooks_cancel_the_schedulers_pending_timer_and_freeze_the_heap(tmp_path, fail, launcher):
    record = _run(tmp_path, fail=fail, launcher=launcher)
    scheduler_timers = [module for module in record["started"] if module.startswith("snakemake.scheduling")]
    # Snakemake still starts the timers the hook is about (else the hook is stale: remove it).
    assert scheduler_timers, record
    cancelled = [module for module, _ in record["cancelled"]]
    assert cancelled and all(module.startswith("snakemake.scheduling") for module in cancelled), record
    # Only timers still waiting are cancelled.
    assert not any(was_finished for _, was_finished in record["cancelled"]), record
    assert record["gc_frozen"] > 0


def test_without_hooks_snakemake_leaves_its_timer_running(tmp_path):
    # The record shows the difference the hooks make: nothing cancelled, nothing frozen.
    record = _run(tmp_path, "--no-hooks")
    assert any(module.startswith("snakemake.scheduling") for module in record["started"])
    assert record["cancelled"] == [] and record["gc_frozen"] == 0


def test_a_python_session_running_the_workflow_through_the_api_is_left_alone(tmp_path):
    # It goes on after the run: no exit to hasten, and its heap must stay collectable.
    record = _run(tmp_path, launcher="api")
    # (The API sets no job rate by default, so it starts no such timer; freezing is what to rule out.)
    assert (tmp_path / "done.txt").is_file()
    assert record["cancelled"] == [] and record["gc_frozen"] == 0
