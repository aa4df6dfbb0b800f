"""train.devices in the workflow: the train job runs as two processes (CPU, gloo) and rank 0 writes the outputs."""

from __future__ import annotations

import json

import anndata
import pandas as pd
from wf_helpers import planned_jobs, snakemake, write_config

TINY = {"simulate": {"n_cells": 300, "n_genes": 60, "n_batches": 2, "n_groups": 3}}
RUN = {"dataset": "resources/demo.h5ad", "setup": {"batch_key": "batch"}, "split": {"batch_size": 64},
       "model": {"n_latent": 4, "n_hidden": 16}, "train": {"max_epochs": 3, "devices": 2},
       "report": {"metrics": False}, "resources": {"threads": 2}}


def test_train_devices_2_trains_with_two_processes_and_the_workflow_finishes(tmp_path):
    write_config(tmp_path, {**TINY, "runs": {"ddp": RUN}})
    snakemake(tmp_path, "--cores", "2", "-q")
    run = tmp_path / "results" / "ddp"
    log = (run / "logs" / "train.log").read_text()
    assert "training with 2 processes (2 per node on 1 node(s), launcher local, 1 thread(s) each)" in log
    assert "[rank 0] epoch 3/3" in log and "[rank 1] snakevi train finished" in log
    assert len(pd.read_csv(run / "history.csv")) == 3
    assert anndata.read_h5ad(run / "embedding.h5ad").obsm["X_scVI"].shape == (300, 4)
    stamp = json.loads((run / "checkpoints" / "fingerprint.json").read_text())
    assert "devices" not in stamp["train_params"]  # not a training parameter: its own param

    # The number of processes is part of the run: going back to one process trains again...
    one = {**RUN, "train": {**RUN["train"], "devices": 1}}
    write_config(tmp_path, {**TINY, "runs": {"ddp": one}})
    assert planned_jobs(snakemake(tmp_path, "-n", "--cores", "2").stdout).get("train") == 1
    # ...but how they start changes no result.
    local = {**RUN, "train": {**RUN["train"], "launcher": "local"}}
    write_config(tmp_path, {**TINY, "runs": {"ddp": local}})
    assert "train" not in planned_jobs(snakemake(tmp_path, "-n", "--cores", "2").stdout)


def test_more_nodes_than_one_without_slurm_is_refused_naming_the_key(tmp_path):
    run = {**RUN, "train": {**RUN["train"], "nodes": 2}}
    write_config(tmp_path, {**TINY, "runs": {"ddp": run}})
    out = snakemake(tmp_path, "--cores", "2", "results/ddp/history.csv", check=False)
    assert out.returncode != 0
    log = (tmp_path / "results" / "ddp" / "logs" / "train.log").read_text()
    assert "train.nodes=2 needs the srun launcher inside a SLURM allocation" in log
    assert not (tmp_path / "results" / "ddp" / "model").exists()


class _Resources(dict):
    """A job's resources as the slurm executor reads them (``get`` and attributes)."""

    __getattr__ = dict.__getitem__


def _train_resources(dry_run: str) -> dict:
    block = dry_run.split("rule train:", 1)[1]
    line = next(line for line in block.splitlines() if line.strip().startswith("resources:"))
    pairs = (item.split("=", 1) for item in line.split(":", 1)[1].split(", "))
    return {key.strip(): int(value) if value.isdigit() else value for key, value in pairs}


def test_on_slurm_a_multi_gpu_multi_node_train_job_asks_for_one_task_per_gpu(tmp_path):
    # No GPU and one node here: check the sbatch line the slurm executor would submit.
    from types import SimpleNamespace

    from snakemake_executor_plugin_slurm.submit_string import get_submit_command
    from snakemake_executor_plugin_slurm.utils import set_gres_string

    run = {**RUN, "train": {**RUN["train"], "devices": 2, "nodes": 3}, "resources": {"threads": 8, "gpu": 2}}
    write_config(tmp_path, {**TINY, "runs": {"ddp": run}})
    resources = _train_resources(snakemake(tmp_path, "-n", "--cores", "2", "results/ddp/history.csv").stdout)
    assert resources["mpi"] == "srun"  # the executor then runs the script in the allocation, not in srun -n1
    job = SimpleNamespace(resources=_Resources(resources), threads=8)
    params = {"run_uuid": "u", "slurm_logfile": "log", "comment_str": "c", "account": "", "partition": "",
              "workdir": str(tmp_path)}
    sbatch = (get_submit_command(job, params) + set_gres_string(job)).split()  # as the executor builds it
    for flag in ("--gpus=6", "--ntasks-per-gpu=1", "--ntasks=6", "--nodes=3", "--cpus-per-task=4"):
        assert flag in sbatch, (flag, sbatch)
