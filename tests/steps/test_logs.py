"""The step log: a crash in native code (HDF5, torch) leaves its Python stack in the log file."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def test_a_native_crash_inside_a_step_is_written_to_its_log(tmp_path):
    log = tmp_path / "step.log"
    script = textwrap.dedent(f"""
        import faulthandler
        from snakevi.steps.logs import step_logging

        def write_the_embedding():
            faulthandler._sigsegv()  # what HDF5 did on a full disk

        with step_logging({str(log)!r}, step="export demo"):
            write_the_embedding()
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    text = log.read_text()
    assert "Fatal Python error: Segmentation fault" in text, text
    assert "write_the_embedding" in text, text


def _run(script: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(script)], capture_output=True, text=True,
                          timeout=120)


def test_a_workflow_script_stopped_by_a_signal_exits_with_the_stops_status(tmp_path):
    # What scripts/train.py gets when SIGTERM stops training after a checkpoint: the status of
    # `snakevi train` (3), one line in the log, no traceback on stderr.
    log = tmp_path / "train.log"
    proc = _run(f"""
        from snakevi.steps.logs import step_logging
        from snakevi.train.recipe import TrainingInterrupted

        with step_logging({str(log)!r}, step="train demo", ends_process=True):
            raise TrainingInterrupted("stopped by SIGTERM after epoch 3; rerun to resume")
    """)
    assert proc.returncode == 3, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    assert "train demo failed: TrainingInterrupted: stopped by SIGTERM" in log.read_text()


def test_a_workflow_script_that_fails_otherwise_keeps_its_error(tmp_path):
    proc = _run(f"""
        from snakevi.steps.logs import step_logging

        with step_logging({str(tmp_path / "x.log")!r}, step="export demo", ends_process=True):
            raise OSError("No space left on device")
    """)
    assert proc.returncode == 1
    assert "OSError: No space left on device" in proc.stderr


def test_a_finished_workflow_script_freezes_the_collector_and_a_library_call_does_not(tmp_path):
    proc = _run(f"""
        import gc
        from snakevi.steps.logs import step_logging

        with step_logging({str(tmp_path / "a.log")!r}, step="report demo"):
            pass
        print("library", gc.get_freeze_count())
        with step_logging({str(tmp_path / "b.log")!r}, step="report demo", ends_process=True):
            pass
        print("script", gc.get_freeze_count() > 0)
    """)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["library", "0", "script", "True"]
