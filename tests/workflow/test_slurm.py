"""The demo workflow on a real (single-node) SLURM with snakemake-executor-plugin-slurm.

Needs a running SLURM: tests/workflow/slurm/start_slurm.sh starts one (as root; .ci/run does).
Without SLURM the test skips, unless SNAKEVI_REQUIRE_SLURM=1 (set by .ci/run), where it fails.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import anndata
import pandas as pd
import pytest

from wf_helpers import REPO, snakemake, write_config

START = REPO / "tests" / "workflow" / "slurm" / "start_slurm.sh"


def slurm_problem() -> str | None:
    """Why SLURM cannot run jobs here, or None when `sinfo` shows a node ready for work."""
    if shutil.which("sinfo") is None or shutil.which("sbatch") is None:
        return "no SLURM client (sinfo/sbatch) on PATH"
    try:
        out = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired:
        return "sinfo did not answer within 30 s"
    states = set(out.stdout.split())
    if out.returncode != 0 or not states & {"idle", "mix", "alloc"}:
        return f"no SLURM node ready (sinfo exit {out.returncode}: {(out.stdout + out.stderr).strip()!r})"
    return None


@pytest.fixture(scope="module")
def slurm():
    problem = slurm_problem()
    if problem is not None:
        message = f"SLURM unavailable: {problem}. Start one with `sudo {START}`."
        if os.environ.get("SNAKEVI_REQUIRE_SLURM") == "1":
            pytest.fail(f"{message} (SNAKEVI_REQUIRE_SLURM=1 makes this an error)")
        pytest.skip(message)


def test_the_demo_runs_on_slurm(slurm, tmp_path, demo_config):
    config = {**demo_config, "runs": {"demo": {**demo_config["runs"]["demo"],
                                               "resources": {"threads": 1, "mem_mb": 1000, "runtime": 10}}}}
    write_config(tmp_path, config)
    snakemake(tmp_path, "--workflow-profile", str(REPO / "workflow" / "profiles" / "slurm"),
              # This test cluster has no accounting (see slurm.conf.in).
              "--slurm-no-account", "--slurm-status-command", "squeue",
              "--slurm-init-seconds-before-status-checks", "1", "--slurm-keep-successful-logs",
              # Each SLURM job starts snakemake two or more times and the plugin polls less and
              # less often while nothing finishes: two group jobs, one after the other, keep it short.
              "--groups", "register=pre", "prepare=pre", "train=post", "export=post", "report=post",
              "integration=post",
              # The test node has 2 CPUs: --cores makes the post group run export, report and
              # integration two at a time instead of asking SLURM for 3 CPUs it cannot give.
              "--cores", "2", "--jobs", "4", timeout=400)

    run = tmp_path / "results" / "demo"
    assert anndata.read_h5ad(run / "embedding.h5ad").obsm["X_scVI"].shape == (400, 4)
    assert (run / "model" / "model.pt").is_file() and (run / "checkpoints" / "last.ckpt").is_file()
    assert (run / "report" / "loss_elbo.png").stat().st_size > 0
    assert list(pd.read_csv(tmp_path / "results" / "summary.tsv", sep="\t")["run"]) == ["demo"]
    # The jobs ran as SLURM jobs: the plugin kept one log per job, named by the SLURM job id.
    logs = tmp_path / ".snakemake" / "slurm_logs"
    rules = {path.relative_to(logs).parts[0] for path in logs.rglob("*.log")}
    assert rules == {"group_pre_prepare_register", "group_post_export_integration_report_train"}


def test_a_two_process_train_job_runs_as_one_slurm_job_of_two_tasks(slurm, tmp_path, demo_config):
    demo = demo_config["runs"]["demo"]
    config = {**demo_config, "runs": {"ddp": {
        **demo, "train": {**demo.get("train", {}), "devices": 2},
        "report": {"metrics": False}, "resources": {"threads": 2, "mem_mb": 2000, "runtime": 10}}}}
    write_config(tmp_path, config)
    snakemake(tmp_path, "--workflow-profile", str(REPO / "workflow" / "profiles" / "slurm"),
              "--slurm-no-account", "--slurm-status-command", "squeue",
              "--slurm-init-seconds-before-status-checks", "1", "--slurm-keep-successful-logs",
              "--groups", "register=pre", "prepare=pre", "--cores", "2", "--jobs", "4",
              "results/ddp/history.csv", timeout=400)
    run = tmp_path / "results" / "ddp"
    log = (run / "logs" / "train.log").read_text()
    # srun started the ranks inside the train job's allocation (2 tasks, 1 CPU each).
    assert "training with 2 processes (2 per node on 1 node(s), launcher srun, 1 thread(s) each)" in log, log
    assert "[rank 0] trained" in log and "[rank 1] snakevi train finished" in log
    assert (run / "model" / "model.pt").is_file() and len(pd.read_csv(run / "history.csv")) >= 1
    train_logs = list((tmp_path / ".snakemake" / "slurm_logs" / "rule_train").rglob("*.log"))
    assert len(train_logs) == 1, train_logs
