"""A train job SIGTERMed under Snakemake (what SLURM does at a time limit or on preemption) exits 3,
as `snakevi train` does: the checkpoint is written and the log says to rerun (resuming from it is
tested in test_resume.py).

The job's Python process alone gets the signal (snakemake goes on and reports the failure), so the
exit status Snakemake sees is the script's own.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from rel_helpers import MODEL, tiny_adata

_spec = importlib.util.spec_from_file_location("wf_helpers", Path(__file__).parents[1] / "workflow" / "wf_helpers.py")
wf = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(wf)

CONFIG = {
    "runs": {
        "demo": {
            "dataset": "data.h5ad",
            "setup": {"batch_key": "batch"},
            "split": {"batch_size": 32},
            "model": MODEL,
            # Many epochs: the job is still training when the signal comes.
            "train": {"max_epochs": 500, "checkpoint_every_seconds": 3600},
            "resources": {"threads": 1},
        }
    }
}


def train_job_pids(workdir: Path) -> list[int]:
    """Pids of processes running the train rule's script for ``workdir`` (Snakemake copies it to .snakemake/scripts/)."""
    out = subprocess.run(["pgrep", "-f", f"{workdir}/.snakemake/scripts/.*train.py"], capture_output=True, text=True)
    return [int(pid) for pid in out.stdout.split()]


def test_sigtermed_train_job_exits_3_under_snakemake_and_keeps_its_checkpoint(tmp_path):
    tiny_adata(n_cells=1000, n_genes=40).write_h5ad(tmp_path / "data.h5ad")
    wf.write_config(tmp_path, CONFIG)
    exe = Path(sys.executable).with_name("snakemake")
    env = {**os.environ, "PATH": f"{exe.parent}{os.pathsep}{os.environ.get('PATH', '')}",
           "PYTHONWARNINGS": "ignore::DeprecationWarning", "OMP_NUM_THREADS": "1"}
    cmd = [str(exe), "-s", str(wf.SNAKEFILE), "-d", str(tmp_path), "--cores", "1", "results/demo/history.csv"]
    proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=env, start_new_session=True)
    try:
        live = tmp_path / "results" / "demo" / "checkpoints" / "history.live.csv"
        deadline = time.monotonic() + 300
        while not (live.is_file() and train_job_pids(tmp_path)):
            assert proc.poll() is None, proc.stdout.read()[-4000:]
            assert time.monotonic() < deadline, "the train job wrote no epoch in 300 s"
            time.sleep(0.05)
        for pid in train_job_pids(tmp_path):
            os.kill(pid, signal.SIGTERM)
        output, _ = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode != 0
    # Snakemake reports the job script's own exit status.
    assert "non-zero exit status 3" in output, output[-4000:]
    log = (tmp_path / "results" / "demo" / "logs" / "train.log").read_text()
    assert "received SIGTERM" in log and "to resume from it" in log and "Traceback" not in log
    assert (tmp_path / "results" / "demo" / "checkpoints" / "last.ckpt").is_file()
