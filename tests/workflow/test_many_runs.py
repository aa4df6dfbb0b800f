"""Six runs in one workflow, locally at --cores 2 and through cluster-generic with --jobs 4:
every output is complete and belongs to its own run (issue 5, item 7).

Each run has its own n_latent, epochs and seed, so any mix-up between runs (a model exported
for the wrong run, a summary row from another run) shows up as a wrong shape or value.
"""

from __future__ import annotations

import json

import anndata
import pandas as pd
import pytest

from wf_helpers import REPO, snakemake, write_config

CLUSTER = REPO / "tests" / "workflow" / "cluster"
RUNS = {f"run{i}": {"n_latent": 2 + i, "max_epochs": 1 + i % 2, "seed": 10 + i} for i in range(6)}


def many_runs_config() -> dict:
    return {
        "simulate": {"n_cells": 300, "n_genes": 80, "n_batches": 2, "n_groups": 3, "seed": 0},
        "runs": {
            name: {
                "dataset": "resources/demo.h5ad",
                "seed": spec["seed"],
                "setup": {"batch_key": "batch", "labels_key": "label"},
                "model": {"n_latent": spec["n_latent"], "n_hidden": 16},
                "train": {"max_epochs": spec["max_epochs"]},
                "resources": {"threads": 1},
            }
            for name, spec in RUNS.items()
        },
    }


def check_every_run(workdir) -> None:
    summary = pd.read_csv(workdir / "results" / "summary.tsv", sep="\t").set_index("run")
    assert sorted(summary.index) == sorted(RUNS)
    for name, spec in RUNS.items():
        run = workdir / "results" / name
        emb = anndata.read_h5ad(run / "embedding.h5ad")
        assert emb.obsm["X_scVI"].shape == (300, spec["n_latent"]), name
        meta = json.loads((run / "model" / "model.json").read_text())
        assert meta["init_params"]["n_latent"] == spec["n_latent"], name
        assert meta["init_params"]["seed"] == spec["seed"], name
        history = pd.read_csv(run / "history.csv")
        assert len(history) == spec["max_epochs"], name
        assert summary.loc[name, "n_latent"] == spec["n_latent"]
        assert summary.loc[name, "epochs"] == spec["max_epochs"]
        assert summary.loc[name, "elbo_validation"] == pytest.approx(history["elbo_validation"].iloc[-1])
        assert (run / "report" / "latent_label.png").stat().st_size > 0


@pytest.mark.slow
def test_six_runs_at_two_cores(tmp_path):
    write_config(tmp_path, many_runs_config())
    snakemake(tmp_path, "--cores", "2")
    check_every_run(tmp_path)


@pytest.mark.slow
def test_six_runs_through_cluster_generic_with_four_jobs(tmp_path):
    write_config(tmp_path, many_runs_config())
    submit = f"{CLUSTER / 'submit.sh'} {{rule}} {{threads}} {{resources.mem_mb}} {{resources.runtime}}"
    snakemake(tmp_path, "--executor", "cluster-generic", "--jobs", "4",
              "--cluster-generic-submit-cmd", submit,
              "--cluster-generic-status-cmd", str(CLUSTER / "status.sh"),
              "--seconds-between-status-checks", "1",
              env={"SCHEDULER_DIR": str(tmp_path / "scheduler")}, timeout=900)
    check_every_run(tmp_path)
    exits = [p.read_text().strip() for p in (tmp_path / "scheduler").glob("*.exit")]
    # register, prepare, train, export, report, integration: 6 cluster jobs per run.
    assert len(exits) == 6 * len(RUNS) and set(exits) == {"0"}
