"""Seed replicates, a summary that keeps every run with results, setup.genes and setup.missing_labels checks."""

from __future__ import annotations

import pandas as pd
import pytest
from wf_helpers import planned_jobs, snakemake, write_config

TINY = {"simulate": {"n_cells": 300, "n_genes": 60, "n_batches": 2, "n_groups": 3}}
RUN = {"dataset": "resources/demo.h5ad", "setup": {"batch_key": "batch"},
       "model": {"n_latent": 4, "n_hidden": 16}, "train": {"max_epochs": 2},
       "report": {"metrics": False}, "resources": {"threads": 1}}


def test_replicates_are_runs_and_the_summary_keeps_runs_built_before(tmp_path):
    runs = {"rep": {**RUN, "seed": [0, 1]}, "single": {**RUN, "seed": 5}}
    write_config(tmp_path, {**TINY, "runs": runs, "select_runs": ["rep"]})
    snakemake(tmp_path, "--cores", "2", "-q")
    results = tmp_path / "results"
    summary = pd.read_csv(results / "summary.tsv", sep="\t").set_index("run")
    assert list(summary.index) == ["rep_seed0", "rep_seed1"]
    assert list(summary["group"]) == ["rep", "rep"] and list(summary["seed"]) == [0, 1]
    assert summary.loc["rep_seed0", "elbo_validation"] != summary.loc["rep_seed1", "elbo_validation"]
    groups = pd.read_csv(results / "summary_groups.tsv", sep="\t").set_index("group")
    assert groups.loc["rep", "n_runs"] == 2 and groups.loc["rep", "seeds"] == "0,1"
    elbo = summary["elbo_validation"]
    assert groups.loc["rep", "elbo_validation mean"] == pytest.approx(elbo.mean())
    assert groups.loc["rep", "elbo_validation sd"] == pytest.approx(elbo.std(ddof=1))

    # Another selection builds the other run; the replicates keep their rows and are not rebuilt.
    model = results / "rep_seed0" / "model" / "model.pt"
    built = model.stat().st_mtime_ns
    write_config(tmp_path, {**TINY, "runs": runs, "select_runs": ["single"]})
    snakemake(tmp_path, "--cores", "2", "-q")
    summary = pd.read_csv(results / "summary.tsv", sep="\t").set_index("run")
    assert list(summary.index) == ["rep_seed0", "rep_seed1", "single"]
    assert summary.loc["single", "group"] == "single" and summary.loc["single", "seed"] == 5
    assert model.stat().st_mtime_ns == built
    groups = pd.read_csv(results / "summary_groups.tsv", sep="\t").set_index("group")
    assert list(groups.index) == ["rep", "single"] and pd.isna(groups.loc["single", "elbo_validation sd"])

    # Selecting one replicate by its name works too: only the summary is redone (its inputs moved).
    write_config(tmp_path, {**TINY, "runs": runs, "select_runs": ["rep_seed1"]})
    out = snakemake(tmp_path, "--cores", "1", "-n")
    assert planned_jobs(out.stdout) == {"all": 1, "summary": 1}


@pytest.mark.parametrize(("config", "message"), [
    ({"runs": {"a": {**RUN, "seed": [0, 1]}, "a_seed1": RUN}},
     "Invalid config at runs.a.seed: its replicate 'a_seed1' has the name of another run"),
    ({"runs": {"a": {**RUN, "seed": [0, 1]}}, "queries": {"q": {"reference": "a", "dataset": "resources/demo.h5ad"}}},
     "Invalid config at queries.q.reference: run 'a' has seed replicates; name one of them: ['a_seed0', 'a_seed1']"),
    ({"runs": {"a": {**RUN, "seed": [0, 1.0]}}}, "Invalid config at runs.a.seed.1: 1.0 is not an integer"),
    ({"runs": {"a": {**RUN, "seed": []}}}, "Invalid config at runs.a.seed"),
])
def test_bad_replicate_configs_are_refused_naming_the_key(tmp_path, config, message):
    write_config(tmp_path, {**TINY, **config})
    out = snakemake(tmp_path, "--cores", "1", "-n", check=False)
    assert out.returncode != 0
    assert message in out.stdout + out.stderr
    assert not (tmp_path / "results").exists()


def test_a_gene_list_is_an_input_of_register(tmp_path):
    run = {**RUN, "setup": {"batch_key": "batch", "genes": "config/genes.txt"}}
    write_config(tmp_path, {**TINY, "runs": {"listed": run}})
    out = snakemake(tmp_path, "--cores", "1", "-n", check=False)
    assert out.returncode != 0 and "config/genes.txt" in out.stdout + out.stderr  # missing: Snakemake names it
    (tmp_path / "config" / "genes.txt").write_text("gene1\ngene2\n")
    assert planned_jobs(snakemake(tmp_path, "--cores", "1", "-n").stdout)["register"] == 1


@pytest.mark.parametrize(("setup", "message"), [
    ({"labels_key": "label", "missing_labels": "unlabeled"},
     "Invalid config at runs.a.setup.missing_labels: 'unlabeled' needs setup.unlabeled_category"),
    ({"missing_labels": "drop"}, "Invalid config at runs.a.setup.missing_labels: 'drop' needs setup.labels_key"),
])
def test_missing_labels_needs_its_keys_before_any_job(tmp_path, setup, message):
    write_config(tmp_path, {**TINY, "runs": {"a": {**RUN, "setup": {"batch_key": "batch", **setup}}}})
    out = snakemake(tmp_path, "--cores", "1", "-n", check=False)
    assert out.returncode != 0 and message in out.stdout + out.stderr
