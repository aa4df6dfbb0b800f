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
