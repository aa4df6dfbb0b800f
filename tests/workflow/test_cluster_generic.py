"""The demo workflow through snakemake's cluster-generic executor and a local scheduler script."""

from __future__ import annotations

import anndata
import pandas as pd

from wf_helpers import REPO, snakemake, write_config

CLUSTER = REPO / "tests" / "workflow" / "cluster"


def test_the_demo_runs_through_cluster_generic(tmp_path, demo_config):
    write_config(tmp_path, demo_config)
    submit = f"{CLUSTER / 'submit.sh'} {{rule}} {{threads}} {{resources.mem_mb}} {{resources.runtime}}"
    snakemake(tmp_path, "--executor", "cluster-generic", "--jobs", "4",
              "--cluster-generic-submit-cmd", submit,
              "--cluster-generic-status-cmd", str(CLUSTER / "status.sh"),
              "--seconds-between-status-checks", "1",
              env={"SCHEDULER_DIR": str(tmp_path / "scheduler")})

    run = tmp_path / "results" / "demo"
    assert anndata.read_h5ad(run / "embedding.h5ad").obsm["X_scVI"].shape == (400, 4)
    assert (run / "model" / "model.pt").is_file()
    assert (run / "report" / "latent_batch.png").stat().st_size > 0
    assert list(pd.read_csv(tmp_path / "results" / "summary.tsv", sep="\t")["run"]) == ["demo"]
    # Every job but the local rules (simulate, summary) went through the scheduler with the
    # rule's resources, and succeeded there.
    submitted = {}
    for args in (tmp_path / "scheduler").glob("*.args"):
        rule, threads, mem_mb, runtime = args.read_text().split()
        submitted[rule] = (int(threads), int(mem_mb), int(runtime))
        assert args.with_suffix(".exit").read_text().strip() == "0"
    assert sorted(submitted) == ["export", "integration", "prepare", "register", "report", "train"]
    assert submitted["train"] == (1, 4000, 120)
